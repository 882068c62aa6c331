"""The official DOLG / pycls image transforms (docs/ALGORITHMS.md 1.6), without cv2 or torchvision.

Train: Inception random-sized crop -> resize to size x size -> horizontal flip -> /255 -> AlexNet
PCA lighting -> per-channel normalisation. Val: scale the short side -> centre crop.
Retrieval: the service's extraction at chosen scales (long-side cap, per-scale bilinear resize).

Conventions that keep training and serving consistent:
- Decoding gives upright (EXIF applied) RGB uint8 [H,W,3]; the network input is planar float32
  [3,H,W] in `ColourSpec.order`. BGR with BGR-ordered ImageNet mean/std is the default, as in
  the official code and the service's `model_meta.json` (app.artifacts.Preprocessing).
- Resizes have cv2.INTER_LINEAR semantics on float pixels (half-pixel centres, no antialiasing
  even when downscaling), which is what `F.interpolate(bilinear, align_corners=False)` computes.
- All randomness comes from a `numpy.random.Generator` handed in by the caller, so a sample's
  augmentation is a pure function of (seed, epoch, index), whatever the worker count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

ColourOrder = Literal["BGR", "RGB"]

# ImageNet statistics in BGR order, as the official code and app.artifacts (BGR_MEAN, BGR_STD).
BGR_MEAN = (0.406, 0.456, 0.485)
BGR_STD = (0.225, 0.224, 0.229)
# AlexNet PCA lighting: eigenvalues and eigenvectors (rows = R, G, B) of the ImageNet pixel
# covariance, as in pycls / DOLG `datasets/transforms.py`.
EIG_VALS = (0.2175, 0.0188, 0.0045)
EIG_VECS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# The service's long-side cap uses Pillow LANCZOS with this reducing gap (app.inference.preprocess).
_CAP_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class ColourSpec:
    """Colour order and normalisation of the network input; stored in checkpoints as the
    artifact's `preprocessing` fields so the service normalises exactly like training did."""

    order: ColourOrder = "BGR"
    mean: tuple[float, float, float] = BGR_MEAN
    std: tuple[float, float, float] = BGR_STD
    pixel_divisor: float = 255.0

    @classmethod
    def imagenet(cls, order: ColourOrder) -> ColourSpec:
        """ImageNet statistics in the given channel order."""
        if order == "BGR":
            return cls("BGR", BGR_MEAN, BGR_STD)
        return cls("RGB", BGR_MEAN[::-1], BGR_STD[::-1])

    def preprocessing_fields(self) -> dict[str, Any]:
        """The `app.artifacts.Preprocessing` fields this spec fixes (names as there)."""
        return {
            "colour_order": self.order,
            "mean": list(self.mean),
            "std": list(self.std),
            "pixel_divisor": self.pixel_divisor,
        }


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to upright RGB uint8 [H,W,3]; transparency is composited on white
    (what the service's decoder does)."""
    with Image.open(path) as opened:
        img = ImageOps.exif_transpose(opened)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(canvas, rgba)
        return np.asarray(img.convert("RGB")).copy()


def to_planar(img: np.ndarray, order: ColourOrder) -> Tensor:
    """RGB uint8 [H,W,3] -> float32 [3,H,W] in `order`, still in 0..255."""
    hwc = img[:, :, ::-1] if order == "BGR" else img
    return torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1).float()


def resize_bilinear(planes: Tensor, out_h: int, out_w: int) -> Tensor:
    """[C,H,W] float32 -> [C,out_h,out_w] with cv2.INTER_LINEAR semantics (no antialiasing)."""
    if tuple(planes.shape[1:]) == (out_h, out_w):
        return planes
    return F.interpolate(
        planes[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=False
    )[0]


def scale_short_side(planes: Tensor, size: int) -> Tensor:
    """pycls `scale`: short side -> size, long side -> floor(long / short * size)."""
    h, w = planes.shape[1:]
    if (w <= h and w == size) or (h <= w and h == size):
        return planes
    if w < h:
        return resize_bilinear(planes, math.floor(h / w * size), size)
    return resize_bilinear(planes, size, math.floor(w / h * size))


def center_crop(planes: Tensor, size: int) -> Tensor:
    """pycls `center_crop` of [C,H,W] to [C,size,size]; offsets rounded up."""
    h, w = planes.shape[1:]
    y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    return planes[:, y : y + size, x : x + size]


def random_sized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    area_frac: float = 0.08,
    aspect: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    tries: int = 10,
) -> tuple[int, int, int, int] | None:
    """(y, x, h, w) of an Inception crop as pycls `random_sized_crop` draws it, or None when all
    `tries` fail (the caller then falls back to scale + centre crop).

    Per try: area ~ U(area_frac, 1) * H * W, aspect ~ U(3/4, 4/3), w = round(sqrt(area * aspect)),
    h = round(sqrt(area / aspect)), swapped with probability 0.5; accepted if it fits. The
    offset is drawn with an exclusive upper bound (numpy randint), so the last row/column offset
    is never chosen, as in the official code.
    """
    area = height * width
    for _ in range(tries):
        target_area = rng.uniform(area_frac, 1.0) * area
        ratio = rng.uniform(aspect[0], aspect[1])
        w_crop = round(math.sqrt(target_area * ratio))
        h_crop = round(math.sqrt(target_area / ratio))
        if rng.uniform() < 0.5:
            w_crop, h_crop = h_crop, w_crop
        if 1 <= h_crop <= height and 1 <= w_crop <= width:
            y = 0 if h_crop == height else int(rng.integers(0, height - h_crop))
            x = 0 if w_crop == width else int(rng.integers(0, width - w_crop))
            return y, x, h_crop, w_crop
    return None


def lighting_offsets(
    rng: np.random.Generator, alpha_std: float, order: ColourOrder = "BGR"
) -> np.ndarray:
    """AlexNet PCA lighting: per-channel offsets [3] (in `order`) added to the /255 image.

    alpha ~ N(0, alpha_std) [3]; rgb[k] = sum_j EIG_VECS[k][j] * alpha[j] * EIG_VALS[j] (an
    offset per R, G, B). pycls adds rgb[2 - i] to channel i of its BGR image, i.e. each offset
    goes to its own colour; in RGB order the offsets are used as they are.
    """
    alpha = rng.normal(0.0, alpha_std, size=3)
    rgb = np.asarray(EIG_VECS, dtype=np.float64) @ (alpha * np.asarray(EIG_VALS))  # [3] R,G,B
    return rgb[::-1].copy() if order == "BGR" else rgb


def normalise(planes: Tensor, colour: ColourSpec, offsets: np.ndarray | None = None) -> Tensor:
    """[3,H,W] 0..255 -> (x / divisor + offsets - mean) / std per channel (offsets: lighting)."""
    shift = -np.asarray(colour.mean, dtype=np.float64)
    if offsets is not None:
        shift = shift + offsets
    gain = torch.tensor([1.0 / (colour.pixel_divisor * s) for s in colour.std]).view(3, 1, 1)
    bias = torch.tensor(shift / np.asarray(colour.std), dtype=torch.float32).view(3, 1, 1)
    return planes * gain + bias


@dataclass(frozen=True)
class TrainTransform:
    """Official training augmentation: RGB uint8 [H,W,3] -> float32 [3,size,size]."""

    size: int = 512
    colour: ColourSpec = ColourSpec()
    area_frac: float = 0.08
    aspect: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    tries: int = 10
    flip_p: float = 0.5
    lighting_std: float = 0.1

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> Tensor:
        height, width = img.shape[:2]
        box = random_sized_crop_box(height, width, rng, self.area_frac, self.aspect, self.tries)
        if box is not None:
            y, x, h, w = box
            planes = resize_bilinear(
                to_planar(img[y : y + h, x : x + w], self.colour.order), self.size, self.size
            )
        else:
            planes = center_crop(
                scale_short_side(to_planar(img, self.colour.order), self.size), self.size
            )
        if rng.uniform() < self.flip_p:
            planes = planes.flip(-1)
        offsets = (
            lighting_offsets(rng, self.lighting_std, self.colour.order)
            if self.lighting_std > 0
            else None
        )
        return normalise(planes, self.colour, offsets).contiguous()


@dataclass(frozen=True)
class EvalTransform:
    """Official val transform: short side -> resize (floor), centre crop -> [3,size,size]."""

    size: int = 512
    resize: int = 585  # round(512 * 256 / 224): the official TEST.IM_SIZE / TRAIN.IM_SIZE ratio
    colour: ColourSpec = ColourSpec()

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> Tensor:
        planes = scale_short_side(to_planar(img, self.colour.order), max(self.resize, self.size))
        return normalise(center_crop(planes, self.size), self.colour).contiguous()


def cap_long_side(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale RGB uint8 so that max(H, W) <= max_side (never upscales), as the service's
    `cap_long_side` does (Pillow LANCZOS, reducing_gap 3)."""
    height, width = img.shape[:2]
    if max(height, width) <= max_side:
        return img
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(img)).resize(
        size, Image.Resampling.LANCZOS, reducing_gap=_CAP_REDUCING_GAP
    )
    return np.asarray(resized).copy()


@dataclass(frozen=True)
class RetrievalTransform:
    """The service's single-image extraction: RGB uint8 -> one [3,h,w] input per scale.

    Long side capped at `max_side`, normalised, then resized per scale to
    (round(w*s), round(h*s)); scales giving a side < 16 px are skipped (all but the largest
    when every one would be).
    """

    max_side: int = 512
    scales: tuple[float, ...] = (1.0,)
    colour: ColourSpec = ColourSpec()

    def __call__(self, img: np.ndarray) -> list[Tensor]:
        planes = normalise(
            to_planar(cap_long_side(img, self.max_side), self.colour.order), self.colour
        )
        h, w = planes.shape[1:]
        sizes = [(round(h * s), round(w * s)) for s in self.scales]
        kept = [hw for hw in sizes if min(hw) >= 16] or [max(sizes)]
        return [resize_bilinear(planes, max(1, oh), max(1, ow)).contiguous() for oh, ow in kept]
