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


def build_pool(name: str, p: float = 3.0) -> nn.Module:
    """Global pooling by name: "gem" (learnable p), "mac", "spoc" or "rmac"."""
    pools: dict[str, type[nn.Module]] = {"mac": MAC, "spoc": SPoC, "rmac": RMAC}
    if name == "gem":
        return GeM(p=p)
    if name not in pools:
        raise ValueError(f"unknown pooling {name!r}; expected one of gem, mac, spoc, rmac")
    return pools[name]()


# ------------------------------------------------------------------------------------------
# SuperGlobal descriptor modules (docs/ALGORITHMS.md 3.2); stateless, test-time replacements.


class GeMPlus(nn.Module):
    """GeM+ with a fixed p (SuperGlobal 4.6): [B,C,H,W] -> [B,C,1,1]. No state: it has no
    learned parameter, so it replaces a `GeM` only at test/export time."""

    def __init__(self, p: float = LF.SUPERGLOBAL_GEM_P, eps: float = LF.SUPERGLOBAL_GEM_EPS):
        super().__init__()
        self.p = float(p)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return LF.gem_plus(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"


class RegionalGeM(nn.Module):
    """Regional-GeM: [B,C,H,W] -> [B,C,H,W], 0.5 * k x k power mean (p 2.5, k 5) + 0.5 * x."""

    def __init__(self, p: float = LF.SUPERGLOBAL_RGEM_P, kernel: int = LF.SUPERGLOBAL_RGEM_KERNEL):
        super().__init__()
        self.p = float(p)
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        return LF.regional_gem(x, self.p, self.kernel)

    def extra_repr(self) -> str:
        return f"p={self.p}, kernel={self.kernel}"


class ReLUPlus(nn.Module):
    """ReLU+: max(x, alpha) (SuperGlobal alpha 0.014)."""

    def __init__(self, alpha: float = LF.SUPERGLOBAL_RELU_ALPHA) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return LF.relu_plus(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class ScaleGeM(nn.Module):
    """Scale-GeM over per-scale descriptors [S,B,D] -> [B,D]; p None = max of unit vectors.

    The service does the same outside the graph (`scale_pooling: "max"` in the model meta);
    this module is the torch-side reference of that pooling.
    """

    def __init__(self, p: float | None = None) -> None:
        super().__init__()
        self.p = p

    def forward(self, descriptors: Tensor) -> Tensor:
        return LF.scale_gem(descriptors, self.p)

    def extra_repr(self) -> str:
        return "p=inf (max of L2-normalised)" if self.p is None else f"p={self.p}"
