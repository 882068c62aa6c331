"""Thin nn.Module wrappers over `models.layers.functional` (state only where it is learned)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.layers import functional as LF


class GeM(nn.Module):
    """Generalised-mean pooling [B,C,H,W] -> [B,C,1,1] with a learnable scalar `p` ([1]).

    The parameter is named `p` so that a DOLG checkpoint's `pool_g.p` loads into it.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        self.eps = eps
        if learnable:
            self.p = nn.Parameter(torch.ones(1) * p)
        else:
            self.register_buffer("p", torch.ones(1) * p, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return LF.gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()[0]):.4f}, eps={self.eps}"


class MAC(nn.Module):
    """Global max pooling [B,C,H,W] -> [B,C,1,1]."""

    def forward(self, x: Tensor) -> Tensor:
        return LF.mac(x)


class SPoC(nn.Module):
    """Global average pooling [B,C,H,W] -> [B,C,1,1]."""

    def forward(self, x: Tensor) -> Tensor:
        return LF.spoc(x)


class RMAC(nn.Module):
    """Regional MAC [B,C,H,W] -> [B,C,1,1]; the region grid depends on H x W (not exportable
    with dynamic spatial axes, so it is offered for torch-side baselines only)."""

    def __init__(self, levels: int = 3, eps: float = 1e-6) -> None:
        super().__init__()
        self.levels = levels
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return LF.rmac(x, self.levels, self.eps)


class L2N(nn.Module):
    """L2 normalisation along `dim`."""

    def __init__(self, dim: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return LF.l2n(x, self.dim, self.eps)


def build_pool(name: str, p: float = 3.0) -> nn.Module:
    """Global pooling by name: "gem" (learnable p), "mac", "spoc" or "rmac"."""
    pools: dict[str, type[nn.Module]] = {"mac": MAC, "spoc": SPoC, "rmac": RMAC}
    if name == "gem":
        return GeM(p=p)
    if name not in pools:
        raise ValueError(f"unknown pooling {name!r}; expected one of gem, mac, spoc, rmac")
    return pools[name]()
