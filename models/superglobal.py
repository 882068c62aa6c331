"""SuperGlobal's test-time descriptor modules applied to a DOLG or ResNet-pooling network.

SuperGlobal (ICCV 2023, docs/ALGORITHMS.md 3.1-3.3) changes a trained network at test time only:
- GeM+: the global GeM uses a fixed p (4.6, clamp 1e-8) instead of the learned one;
- Regional-GeM: the s4 map goes through a 5x5 power mean (p 2.5), mixed 50/50 with itself,
  before the global pooling;
- ReLU+: the post-addition ReLU of every s1-s3 block becomes max(x, 0.014), and, as in the
  official code (a flag quirk), so do the two inner ReLUs of every s1 block;
- Scale-GeM: per-scale descriptors are pooled with the max of the unit vectors instead of the
  mean. That happens outside the graph (`Preprocessing.scale_pooling = "max"`), not here.

They were tuned on CVNet (whose head also L2-normalises the pooled vector before its FC; DOLG's
`fc_t` gets no such normalisation here), never on DOLG, so everything is off by default.
The modified network computes a different function: its state_dict no longer matches the
checkpoint (GeM+ has no parameter), so apply this only to a model that is about to be exported
or evaluated, never before saving or training.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from models.layers import functional as LF
from models.layers.modules import GeMPlus, RegionalGeM, ReLUPlus
from models.resnet import ResNet

logger = logging.getLogger(__name__)

# The attribute holding the global pooling of f4 in each architecture.
_POOL_ATTRS = ("pool_g", "pool")  # DOLG, ResNetPool


@dataclass(frozen=True)
class SuperGlobalOptions:
    """Which SuperGlobal modules to apply; defaults apply none."""

    gem_p: float | None = None  # GeM+ with this fixed p (SuperGlobal: 4.6)
    rgem: bool = False  # Regional-GeM on f4 before the global pooling
    relup: bool = False  # ReLU+ in s1-s3 (and s1's inner ReLUs)
    rgem_p: float = LF.SUPERGLOBAL_RGEM_P
    rgem_kernel: int = LF.SUPERGLOBAL_RGEM_KERNEL
    relu_alpha: float = LF.SUPERGLOBAL_RELU_ALPHA

    @property
    def enabled(self) -> bool:
        return self.gem_p is not None or self.rgem or self.relup

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """Short human text, e.g. 'GeM+ p=4.6, Regional-GeM, ReLU+' ('none' when off)."""
        parts = []
        if self.gem_p is not None:
            parts.append(f"GeM+ p={self.gem_p:g}")
        if self.rgem:
            parts.append(f"Regional-GeM p={self.rgem_p:g} k={self.rgem_kernel}")
        if self.relup:
            parts.append(f"ReLU+ alpha={self.relu_alpha:g}")
        return ", ".join(parts) if parts else "none"


def _find_backbone(model: nn.Module) -> ResNet:
    backbone = getattr(model, "globalmodel", None)
    if not isinstance(backbone, ResNet):
        raise TypeError(f"{type(model).__name__} has no pycls ResNet `globalmodel`")
    return backbone


def _apply_relu_plus(backbone: ResNet, alpha: float) -> int:
    """ReLU+ at the official places; returns how many activations were replaced."""
    replaced = 0
    for stage_name in ("s1", "s2", "s3"):  # s4 and the stem keep a plain ReLU
        stage = getattr(backbone, stage_name)
        for block in stage.children():
            block.relu = ReLUPlus(alpha)  # post-addition activation
            replaced += 1
            if stage_name == "s1":
                # Official quirk: BottleneckTransform receives the relup *class* as its flag,
                # which is truthy, so the s1 (w_out 256) inner ReLUs always become ReLU+.
                block.f.a_relu = ReLUPlus(alpha)
                block.f.b_relu = ReLUPlus(alpha)
                replaced += 2
    return replaced


def apply_superglobal_(model: nn.Module, options: SuperGlobalOptions) -> nn.Module:
    """Apply the enabled SuperGlobal modules to `model` in place and return it.

    Works on `models.dolg.DOLG` (global branch `pool_g`) and the pooled family (`pool`) on any
    backbone; ReLU+ needs a pycls ResNet backbone. The local branch of DOLG (on f3) is
    untouched apart from ReLU+ in the backbone.
    """
    if not options.enabled:
        return model
    pool_attr = next((a for a in _POOL_ATTRS if isinstance(getattr(model, a, None), nn.Module)),
                     None)
    if pool_attr is None:
        raise TypeError(f"{type(model).__name__} has no global pooling module ({_POOL_ATTRS})")
    if options.relup:  # placed in the pycls stages: ResNet backbones only
        count = _apply_relu_plus(_find_backbone(model), options.relu_alpha)
        logger.info("SuperGlobal ReLU+ (alpha %g) on %d activations", options.relu_alpha, count)
    pool: nn.Module = getattr(model, pool_attr)
    if options.gem_p is not None:
        pool = GeMPlus(options.gem_p)
    if options.rgem:
        # [B,2048,h,w] -> rgem -> same shape -> global pooling -> [B,2048,1,1]
        pool = nn.Sequential(RegionalGeM(options.rgem_p, options.rgem_kernel), pool)
    setattr(model, pool_attr, pool)
    logger.info("SuperGlobal modules applied to %s: %s", type(model).__name__,
                options.describe())
    return model
