"""The CFCD descriptor network (`MODEL_DEPLOY`, docs/ALGORITHMS.md 4.1) on any registered backbone.

    f4 = last stage of the backbone                      [B,C4,h,w]
    d  = BN1d( Linear C4 -> 512 (bias) ( GeM_p=3(f4) ) )  [B,512]; l2n(d) is the descriptor

GeM's p is fixed at 3 (no parameter, so no `pool_g.p` key). Module names equal the official
code's (`globalmodel`, `fc`, `bn`; the stage-1/2 training models add the margin head
`desc_cls`, which lives in `models.heads`), so on the pycls ResNets an official
`model_s1_*.pyth` / `model_s2_*.pyth` minus `desc_cls.*` loads with strict=True. The training
stages use this same network: stage 1 adds MadaCos, stage 2 also the local triplet loss on
`forward_features(x)[-1]` (`models.cfcd.local_matching`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from models.backbones import check_zero_init_final_gamma, get_backbone_spec
from models.layers.modules import GeM
from models.model_flags import ModelFlags


@dataclass(frozen=True)
class CFCDConfig:
    """Everything needed to rebuild the network; stored in our checkpoints as `config`."""

    backbone: str = "resnet50"
    reduction_dim: int = 512
    gem_p: float = 3.0  # fixed, not learned
    gem_eps: float = 1e-6
    zero_init_final_gamma: bool = False  # pycls ResNets only (official ZERO_INIT_FINAL_GAMMA)

    def __post_init__(self) -> None:
        get_backbone_spec(self.backbone)  # raises, listing the valid names
        if self.reduction_dim <= 0:
            raise ValueError(f"reduction_dim must be positive, got {self.reduction_dim}")
        if self.gem_p <= 0:
            raise ValueError(f"gem_p must be positive, got {self.gem_p}")
        check_zero_init_final_gamma(self.backbone, self.zero_init_final_gamma)

    # The `models.factory` family that builds this config.
    family: ClassVar[str] = "cfcd"

    @property
    def backbone_name(self) -> str:
        return self.backbone

    @property
    def arch_name(self) -> str:
        """Short name inside artifact names: 'cfcd-r50', 'cfcd-efficientnet_lite0'."""
        return f"cfcd-{get_backbone_spec(self.backbone).short_name}"

    @classmethod
    def from_flags(cls, flags: ModelFlags) -> CFCDConfig:
        flags.refuse_local_branch("CFCD")
        return cls(backbone=flags.backbone_name, reduction_dim=flags.reduction_dim or 512,
                   zero_init_final_gamma=flags.zero_init_final_gamma)

    @property
    def embedding_dim(self) -> int:
        return self.reduction_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CFCDConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CFCDConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)


class CFCD(nn.Module):
    """forward(x [B,3,H,W]) -> [B,reduction_dim], un-normalised (BN output; the export graph
    and the service L2-normalise it, as the official deploy model's last step does)."""

    def __init__(self, config: CFCDConfig | None = None) -> None:
        super().__init__()
        config = config or CFCDConfig()
        self.config = config
        spec = get_backbone_spec(config.backbone)
        # Registration order = official state_dict key order: fc, bn, globalmodel (pool_g has
        # no state).
        self.pool_g = GeM(p=config.gem_p, eps=config.gem_eps, learnable=False)
        self.fc = nn.Linear(spec.stage_channels[-1], config.reduction_dim, bias=True)
        # Official nn.BatchNorm1d defaults (eps 1e-5, momentum 0.1).
        self.bn = nn.BatchNorm1d(config.reduction_dim)
        options = {"zero_init_final_gamma": True} if config.zero_init_final_gamma else {}
        self.globalmodel = spec.build(**options)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B,3,H,W] -> (f3, f4): the last two backbone stages."""
        return self.globalmodel(x)

    def forward_head(self, f3: Tensor, f4: Tensor) -> Tensor:
        """(f3, f4) -> [B,reduction_dim]; only f4 is pooled."""
        del f3
        return self.bn(self.fc(self.pool_g(f4).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        f3, f4 = self.forward_features(x)
        return self.forward_head(f3, f4)
