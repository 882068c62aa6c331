"""Build a descriptor network from its config (the one place that dispatches on architecture)."""

from __future__ import annotations

from torch import nn

from models.dolg import DOLG, DOLGConfig
from models.resnet_pool import ResNetPool


def build_model(config: DOLGConfig) -> nn.Module:
    """DOLG or the ResNet-pooling baseline, randomly initialised as the official code does."""
    if config.architecture == "dolg":
        return DOLG(config)
    return ResNetPool(config)
