"""DOLG: deep orthogonal fusion of local and global features (ICCV 2021),
docs/ALGORITHMS.md 1.2-1.4.

Module and parameter names equal the official code's, so `DOLG.state_dict()` equals an official
checkpoint's `model_state` minus the training-only margin head `desc_cls.*` (which lives in
`models.heads`): official weights load with strict=True.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from models.backbones import (
    check_zero_init_final_gamma,
    get_backbone_spec,
    pycls_backbone_name,
)
from models.layers import functional as LF
from models.layers.modules import GeM
from models.model_flags import ModelFlags
from models.resnet import BN_EPS, BN_MOMENTUM, S3_DIM, init_weights

logger = logging.getLogger(__name__)

Architecture = Literal["dolg", "resnet_pool"]


@dataclass(frozen=True)
class DOLGConfig:
    """Everything needed to rebuild the network; stored in our checkpoints as `config`.

    `architecture="resnet_pool"` selects the classic baseline (`models.resnet_pool`), which uses
    `pooling`; DOLG itself always uses learnable GeM for the global branch.

    `backbone` names any registered backbone (`models.backbones`); None means the pycls
    ResNet of `depth`, the official layout. The local branch runs on the stage before the last
    (c3 channels), the global branch on the last (c4); `local_dim` (default c3; 1024 for the
    ResNets, as official) is the width of the fused local/global features.
    """

    depth: Literal[50, 101] = 50
    with_ma: bool = False
    reduction_dim: int = 512
    gem_p: float = 3.0
    gem_eps: float = 1e-6
    zero_init_final_gamma: bool = False
    architecture: Architecture = "dolg"
    pooling: Literal["gem", "mac", "spoc"] = "gem"
    backbone: str | None = None
    local_dim: int | None = None

    @property
    def backbone_name(self) -> str:
        return self.backbone or pycls_backbone_name(self.depth)

    def __post_init__(self) -> None:
        if self.depth not in (50, 101):
            raise ValueError(f"depth must be 50 or 101, got {self.depth!r}")
        if self.reduction_dim <= 0:
            raise ValueError(f"reduction_dim must be positive, got {self.reduction_dim}")
        if self.architecture not in ("dolg", "resnet_pool"):
            raise ValueError(f"unknown architecture {self.architecture!r}")
        if self.pooling not in ("gem", "mac", "spoc"):
            raise ValueError(f"unknown pooling {self.pooling!r}; expected gem, mac or spoc")
        get_backbone_spec(self.backbone_name)  # raises, listing the valid names
        if self.local_dim is not None and self.local_dim <= 0:
            raise ValueError(f"local_dim must be positive, got {self.local_dim}")
        check_zero_init_final_gamma(self.backbone_name, self.zero_init_final_gamma)

    @property
    def family(self) -> str:
        """The `models.factory` family that builds this config: "dolg", or "resnet_pool" for
        the legacy baseline configs that this type also reads (`models.resnet_pool`)."""
        return self.architecture

    @property
    def embedding_dim(self) -> int:
        return self.reduction_dim

    @property
    def arch_name(self) -> str:
        """Short name inside artifact names: 'dolg-r50', 'dolg-r101-ma', 'resnet_pool-r50',
        'dolg-efficientnet_lite0'."""
        short = get_backbone_spec(self.backbone_name).short_name
        return f"{self.architecture}-{short}{'-ma' if self.with_ma else ''}"

    @classmethod
    def from_flags(cls, flags: ModelFlags) -> DOLGConfig:
        return cls(depth=flags.depth, with_ma=flags.with_ma,  # type: ignore[arg-type]
                   pooling=flags.pooling, gem_p=flags.gem_p,  # type: ignore[arg-type]
                   backbone=flags.backbone, reduction_dim=flags.reduction_dim or 512,
                   zero_init_final_gamma=flags.zero_init_final_gamma)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DOLGConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DOLGConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)


class ASPP(nn.Module):
    """Official multi-atrous module on f3 [B,1024,h,w] -> [B,1024,h,w].

    Branches (all 1024 -> 512, with bias): `aspp.0` 1x1, `aspp.1..3` 3x3 with dilation
    6/12/18 and padding = dilation, and the image-pool branch (GAP -> `im_pool.1` 1x1 -> ReLU).
    Concatenated as [im_pool, 1x1, d6, d12, d18] (2560 ch) -> `conv_after.0` 1x1 -> ReLU.
    """

    def __init__(self, in_channels: int = S3_DIM, branch_channels: int | None = None) -> None:
        super().__init__()
        branch_channels = branch_channels or in_channels // 2  # official: 1024 -> 512
        convs = [nn.Conv2d(in_channels, branch_channels, 1, 1)]
        convs += [
            nn.Conv2d(in_channels, branch_channels, 3, 1, padding=d, dilation=d)
            for d in (6, 12, 18)
        ]
        self.aspp = nn.ModuleList(convs)
        self.im_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, branch_channels, 1, 1), nn.ReLU()
        )
        self.conv_after = nn.Sequential(
            nn.Conv2d(branch_channels * (len(convs) + 1), in_channels, 1, 1), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = [conv(x) for conv in self.aspp]
        # The official code bilinearly upsamples the [B,512,1,1] pooled branch to h x w, which
        # is an exact broadcast of a constant; expand_as keeps the ONNX graph free of a
        # data-dependent scale factor.
        pooled = self.im_pool(x).expand_as(branches[0])
        return self.conv_after(torch.cat([pooled, *branches], dim=1))


class SpatialAttention2d(nn.Module):
    """Local branch (`localmodel`): f3 [B,C3,h,w] -> (fl [B,L,h,w], att [B,1,h,w]).

    z = bn(conv1([aspp](f3))); fl = softplus(conv2(relu(z))) * l2n(z). The direction is taken
    before the ReLU, as in the official code (C3 = L = 1024 there).
    """

    def __init__(self, in_channels: int = S3_DIM, with_ma: bool = False,
                 out_channels: int = S3_DIM) -> None:
        super().__init__()
        self.with_ma = with_ma
        if with_ma:
            self.aspp = ASPP(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, 1)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, 1, 1, 1)
        self.softplus = nn.Softplus(beta=1, threshold=20)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.with_ma:
            x = self.aspp(x)
        z = self.bn(self.conv1(x))
        direction = LF.l2n(z, dim=1)  # F.normalize semantics (eps 1e-12 clamp)
        att = self.softplus(self.conv2(self.act1(z)))  # [B,1,h,w]
        return att * direction, att


class DOLG(nn.Module):
    """DOLG descriptor network without the margin head.

    forward(x [B,3,H,W], normalised as the backbone expects: BGR for the official ResNets) ->
    [B,reduction_dim] un-normalised descriptor (the official `global_feature`); any H, W >= 1
    works (f3 is ceil(H/16) x ceil(W/16)). With the pycls ResNet it is exactly the official
    network; with another backbone, L = local_dim (default its c3) replaces 1024 below.
    """

    def __init__(self, config: DOLGConfig | None = None) -> None:
        super().__init__()
        config = config or DOLGConfig()
        if config.architecture != "dolg":
            raise ValueError(f"DOLG needs architecture='dolg', got {config.architecture!r}")
        self.config = config
        spec = get_backbone_spec(config.backbone_name)
        c3, c4 = spec.stage_channels[-2:]  # ResNet: 1024, 2048
        local_dim = config.local_dim or c3
        # Registration order = official state_dict key order (pool_g, fc_t, fc, globalmodel,
        # localmodel); pool_l has no state.
        self.pool_l = nn.AdaptiveAvgPool2d(1)
        self.pool_g = GeM(p=config.gem_p, eps=config.gem_eps)
        self.fc_t = nn.Linear(c4, local_dim, bias=True)
        self.fc = nn.Linear(2 * local_dim, config.reduction_dim, bias=True)
        options = {"zero_init_final_gamma": True} if config.zero_init_final_gamma else {}
        self.globalmodel = spec.build(**options)
        self.localmodel = SpatialAttention2d(c3, with_ma=config.with_ma, out_channels=local_dim)
        # Official init: pycls N(0, sqrt(2/fan_out)) for the local-branch conv weights, their
        # biases and fc_t / fc keep PyTorch's default init.
        for module in self.localmodel.modules():
            if isinstance(module, nn.Conv2d):
                init_weights(module)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B,3,H,W] -> (f3 [B,C3,h3,w3], f4 [B,C4,h4,w4]) (ResNet: 1024, 2048)."""
        return self.globalmodel(x)

    def forward_head(self, f3: Tensor, f4: Tensor) -> Tensor:
        """(f3, f4) -> descriptor [B,reduction_dim]: orthogonal fusion of local and global."""
        fl, _ = self.localmodel(f3)  # [B,L,h3,w3]
        fg = self.fc_t(self.pool_g(f4).flatten(1))  # [B,L], not normalised
        fo = self.pool_l(LF.orthogonal_fusion(fl, fg)).flatten(1)  # [B,L]
        return self.fc(torch.cat((fg, fo), dim=1))  # fg first, then fo: [B,2L] -> [B,512]

    def forward(self, x: Tensor) -> Tensor:
        f3, f4 = self.forward_features(x)
        return self.forward_head(f3, f4)

    def attention(self, x: Tensor) -> Tensor:
        """Spatial attention map [B,1,h3,w3] of the local branch (for visualisation)."""
        f3, _ = self.forward_features(x)
        return self.localmodel(f3)[1]


def descriptor(model: nn.Module, x: Tensor) -> Tensor:
    """L2-normalised descriptor [B,D] as the service sees it for one scale."""
    return LF.l2n(model(x), dim=1)
