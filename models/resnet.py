"""pycls-style ResNet backbone (docs/ALGORITHMS.md 1.1), the `globalmodel` of DOLG.

Module names follow pycls exactly (`stem.conv`, `s1.b1.f.a_bn`, `s1.b1.proj`, ...) so that
official DOLG, CFCD and pycls ImageNet weights load without renaming. The layout equals
torchvision ResNet v1.5 (stride on the 3x3 conv); only the names differ (`models.checkpoint`
maps them).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Every BatchNorm of the official code: pycls cfg.BN.EPS / cfg.BN.MOM.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1

STAGE_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STEM_WIDTH = 64
# (bottleneck width, output width, first-block stride) of s1..s4.
STAGE_SPECS: tuple[tuple[int, int, int], ...] = (
    (64, 256, 1),
    (128, 512, 2),
    (256, 1024, 2),
    (512, 2048, 2),
)
S3_DIM = 1024
S4_DIM = 2048
# Channels of the maps `forward_stages` returns (s1..s4, strides 4, 8, 16, 32).
STAGE_CHANNELS = tuple(spec[1] for spec in STAGE_SPECS)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class BottleneckTransform(nn.Module):
    """f(x): 1x1 `a` -> `a_bn` -> ReLU -> 3x3 `b` (carries the stride) -> `b_bn` -> ReLU ->
    1x1 `c` -> `c_bn` (no ReLU after `c_bn`; the block adds the shortcut first)."""

    def __init__(self, w_in: int, w_b: int, w_out: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(w_in, w_b, 1, stride=1, padding=0, bias=False)
        self.a_bn = _bn(w_b)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(w_b, w_b, 3, stride=stride, padding=1, bias=False)
        self.b_bn = _bn(w_b)
        self.b_relu = nn.ReLU(inplace=True)
        self.c = nn.Conv2d(w_b, w_out, 1, stride=1, padding=0, bias=False)
        self.c_bn = _bn(w_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + f(x)); the projection shortcut (`proj` + `bn`) exists only when the
    width or the stride changes, i.e. in `b1` of each stage."""

    def __init__(self, w_in: int, w_b: int, w_out: int, stride: int) -> None:
        super().__init__()
        # Registration order matters only for state_dict key order: pycls creates proj/bn
        # before f, so the official checkpoints list them first.
        self.has_proj = w_in != w_out or stride != 1
        if self.has_proj:
            self.proj = nn.Conv2d(w_in, w_out, 1, stride=stride, padding=0, bias=False)
            self.bn = _bn(w_out)
        self.f = BottleneckTransform(w_in, w_b, w_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.bn(self.proj(x)) if self.has_proj else x
        return self.relu(shortcut + self.f(x))


class ResStage(nn.Sequential):
    """Blocks `b1..bd`; only `b1` strides and changes width."""

    def __init__(self, w_in: int, w_b: int, w_out: int, stride: int, depth: int) -> None:
        super().__init__()
        for i in range(depth):
            block = ResBlock(w_in if i == 0 else w_out, w_b, w_out, stride if i == 0 else 1)
            self.add_module(f"b{i + 1}", block)


class ResStem(nn.Module):
    """7x7/2 conv -> BN -> ReLU -> 3x3/2 max pool: [B,3,H,W] -> [B,64,ceil(H/4),ceil(W/4)]."""

    def __init__(self, w_in: int = 3, w_out: int = STEM_WIDTH) -> None:
        super().__init__()
        self.conv = nn.Conv2d(w_in, w_out, 7, stride=2, padding=3, bias=False)
        self.bn = _bn(w_out)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


def init_weights(module: nn.Module, zero_init_final_gamma: bool = False) -> None:
    """pycls `net.init_weights`: conv ~ N(0, sqrt(2/fan_out)), BN gamma 1 / beta 0, linear
    ~ N(0, 0.01). With `zero_init_final_gamma` each block's `c_bn` starts at gamma 0 so the
    block starts as identity (the official training default, ZERO_INIT_FINAL_GAMMA=True); keep
    it off for a random-init export, where it would make every residual branch dead."""
    final_bns = set()
    if zero_init_final_gamma:
        final_bns = {id(m.c_bn) for m in module.modules() if isinstance(m, BottleneckTransform)}
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.0 if id(m) in final_bns else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ResNet-50/101 without head: forward(x [B,3,H,W]) -> (f3, f4) where
    f3 = s3 output [B,1024,ceil(H/16),ceil(W/16)] and f4 = s4 output [B,2048,ceil(H/32),ceil(W/32)].
    """

    # Registered with add_module in __init__; declared for type checkers.
    s1: ResStage
    s2: ResStage
    s3: ResStage
    s4: ResStage
    stage_channels = STAGE_CHANNELS

    def __init__(self, depth: int = 50, zero_init_final_gamma: bool = False) -> None:
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth}; expected one of 50, 101")
        self.depth = depth
        self.stem = ResStem()
        w_in = STEM_WIDTH
        for index, ((w_b, w_out, stride), d) in enumerate(
            zip(STAGE_SPECS, STAGE_DEPTHS[depth], strict=True), start=1
        ):
            self.add_module(f"s{index}", ResStage(w_in, w_b, w_out, stride, d))
            w_in = w_out
        init_weights(self, zero_init_final_gamma)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stem(x)
        x = self.s1(x)
        x = self.s2(x)
        f3 = self.s3(x)
        f4 = self.s4(f3)
        return f3, f4

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """x [B,3,H,W] -> [s1, s2, s3, s4] maps with `stage_channels`, strides 4..32."""
        s1 = self.s1(self.stem(x))
        s2 = self.s2(s1)
        s3 = self.s3(s2)
        return [s1, s2, s3, self.s4(s3)]


# (conv, bn) attribute pairs of the pycls modules above, then of EfficientNet-Lite
# (models/backbones/efficientnet_lite.py), whose names never collide with these.
_CONV_BN_PAIRS = (
    ("conv", "bn"), ("a", "a_bn"), ("b", "b_bn"), ("c", "c_bn"), ("proj", "bn"),
    ("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"), ("_conv_head", "_bn1"),
)


def fuse_conv_bn_(resnet: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the conv before it, in place (eval-mode inference only).

    Used before casting to fp16: folding gamma / sqrt(var + eps) into the weights in float32
    and rounding once is measurably more accurate than letting the exporter fold already-rounded
    half weights (min cosine vs fp32 0.9998 instead of 0.9993 on a calibrated random R50).
    The BN modules become Identity, so the state_dict no longer matches checkpoints.
    Works on any registered backbone (the pairs above).
    """
    if resnet.training:
        raise ValueError("fuse_conv_bn_ needs an eval-mode network")
    for module in resnet.modules():
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return resnet
