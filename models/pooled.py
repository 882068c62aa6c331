"""The pooled descriptor family: backbone -> GeM / MAC / SPoC / R-MAC -> [FC] -> descriptor.

The classic global descriptors of cirtorch (Radenovic et al.) on any registered backbone. With
an ImageNet backbone and no FC (`reduction_dim=None`) nothing is learned: the descriptor is the
pooled feature map itself, which is what the default model ships. `feature` picks the map:
"last" (f4, the usual), "mid" (f3, the stage before: more local, less semantic) or "concat"
(both, each L2-normalised, concatenated: [B,C3+C4]).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from models.backbones import check_zero_init_final_gamma, get_backbone_spec
from models.layers import functional as LF
from models.layers.modules import build_pool
from models.model_flags import ModelFlags

POOLINGS = ("gem", "mac", "spoc", "rmac")
FEATURES = ("last", "mid", "concat")


@dataclass(frozen=True)
class PooledConfig:
    """Everything needed to rebuild a pooled descriptor network."""

    backbone: str = "efficientnet_lite0"
    pooling: Literal["gem", "mac", "spoc", "rmac"] = "gem"
    gem_p: float = 3.0
    feature: Literal["last", "mid", "concat"] = "last"
    # None: the pooled map is the descriptor (dim = its channels); else a learned FC to this.
    reduction_dim: int | None = None
    zero_init_final_gamma: bool = False

    def __post_init__(self) -> None:
        get_backbone_spec(self.backbone)  # raises, listing the valid names
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected one of {POOLINGS}")
        if self.feature not in FEATURES:
            raise ValueError(f"unknown feature {self.feature!r}; expected one of {FEATURES}")
        if self.reduction_dim is not None and self.reduction_dim <= 0:
            raise ValueError(f"reduction_dim must be positive or None, got {self.reduction_dim}")
        if self.gem_p <= 0:
            raise ValueError(f"gem_p must be positive, got {self.gem_p}")
        check_zero_init_final_gamma(self.backbone, self.zero_init_final_gamma)

    # The `models.factory` family that builds this config.
    family: ClassVar[str] = "pooled"

    @property
    def backbone_name(self) -> str:
        return self.backbone

    @property
    def arch_name(self) -> str:
        """Short name inside artifact names: 'pooled-gem-efficientnet_lite0',
        'pooled-mac-mid-resnet50'."""
        feature = "" if self.feature == "last" else f"-{self.feature}"
        return f"pooled-{self.pooling}{feature}-{self.backbone}"

    @classmethod
    def from_flags(cls, flags: ModelFlags) -> PooledConfig:
        flags.refuse_local_branch("the pooled family")
        return cls(backbone=flags.backbone_name, pooling=flags.pooling,  # type: ignore[arg-type]
                   gem_p=flags.gem_p, feature=flags.feature,  # type: ignore[arg-type]
                   reduction_dim=flags.reduction_dim,
                   zero_init_final_gamma=flags.zero_init_final_gamma)

    @property
    def pooled_dim(self) -> int:
        c3, c4 = get_backbone_spec(self.backbone).stage_channels[-2:]
        return {"last": c4, "mid": c3, "concat": c3 + c4}[self.feature]

    @property
    def embedding_dim(self) -> int:
        return self.reduction_dim or self.pooled_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PooledConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PooledConfig fields {unknown}; "
                             f"known fields: {sorted(known)}")
        return cls(**data)


class PooledDescriptor(nn.Module):
    """forward(x [B,3,H,W]) -> [B,embedding_dim], un-normalised (like DOLG.forward)."""

    def __init__(self, config: PooledConfig | None = None) -> None:
        super().__init__()
        config = config or PooledConfig()
        self.config = config
        self.feature = config.feature
        spec = get_backbone_spec(config.backbone)
        options = {"zero_init_final_gamma": True} if config.zero_init_final_gamma else {}
        self.globalmodel = spec.build(**options)
        self.pool = build_pool(config.pooling, p=config.gem_p)
        self.fc: nn.Module = (nn.Linear(config.pooled_dim, config.reduction_dim, bias=True)
                              if config.reduction_dim else nn.Identity())

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.globalmodel(x)

    def forward_head(self, f3: Tensor, f4: Tensor) -> Tensor:
        feature = self.feature
        if feature == "last":
            pooled = self.pool(f4).flatten(1)  # [B,C4]
        elif feature == "mid":
            pooled = self.pool(f3).flatten(1)  # [B,C3]
        else:
            pooled = torch.cat((LF.l2n(self.pool(f3).flatten(1)),
                                LF.l2n(self.pool(f4).flatten(1))), dim=1)  # [B,C3+C4]
        return self.fc(pooled)

    def forward(self, x: Tensor) -> Tensor:
        f3, f4 = self.forward_features(x)
        return self.forward_head(f3, f4)
