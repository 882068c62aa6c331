"""Classic global-pooling baseline: pycls ResNet -> GeM / MAC / SPoC on f4 -> FC 2048 -> D.

Same backbone names as DOLG (`globalmodel.*`), so a DOLG or pycls backbone loads into it; the
FC is a plain learned linear layer (no PCA whitening). Exports through the same ONNX path.
It is the pooled family (`models.pooled`) configured from a `DOLGConfig` with
architecture="resnet_pool": the family "resnet_pool" of `models.factory`, kept so those configs,
checkpoints and artifacts (architecture "resnet_pool") keep their meaning.
"""

from __future__ import annotations

from typing import Any

from models.dolg import DOLGConfig
from models.model_flags import ModelFlags
from models.pooled import PooledConfig, PooledDescriptor


def config_from_flags(flags: ModelFlags) -> DOLGConfig:
    """The baseline's config from command-line model options (FC to 512 unless given)."""
    flags.refuse_local_branch("the resnet_pool baseline")
    return DOLGConfig(depth=flags.depth, architecture="resnet_pool",  # type: ignore[arg-type]
                      pooling=flags.pooling, gem_p=flags.gem_p,  # type: ignore[arg-type]
                      backbone=flags.backbone, reduction_dim=flags.reduction_dim or 512,
                      zero_init_final_gamma=flags.zero_init_final_gamma)


def config_from_dict(data: dict[str, Any]) -> DOLGConfig:
    """The baseline's stored config (`DOLGConfig.to_dict`), architecture resnet_pool."""
    return DOLGConfig.from_dict({**data, "architecture": "resnet_pool"})


class ResNetPool(PooledDescriptor):
    """forward(x [B,3,H,W]) -> [B,reduction_dim], un-normalised (like DOLG.forward)."""

    def __init__(self, config: DOLGConfig | None = None) -> None:
        config = config or DOLGConfig(architecture="resnet_pool")
        if config.architecture != "resnet_pool":
            raise ValueError(
                f"ResNetPool needs architecture='resnet_pool', got {config.architecture!r}"
            )
        if config.with_ma:
            raise ValueError("with_ma applies to DOLG only")
        super().__init__(PooledConfig(
            backbone=config.backbone_name, pooling=config.pooling, gem_p=config.gem_p,
            reduction_dim=config.reduction_dim,
            zero_init_final_gamma=config.zero_init_final_gamma,
        ))
        self.dolg_config = config
        # Callers (checkpoints, export) read `.config` as the DOLGConfig they built it from.
        self.config = config  # type: ignore[assignment]
