"""The working image: one decode per upload, at the size the model needs, for every consumer.

    bytes --decode (DCT-scaled for JPEG in the fast chain)--> RGB --long-side cap--> DecodedImage
    DecodedImage --crop (bbox in upload pixels)--> per-scale inputs [3,h_s,w_s] float32
    DecodedImage --> thumbnail, or any other view of the query (a small grey image, ...)

Two chains, chosen by the artifact (`Preprocessing.pixel_chain`, overridable by the setting
`inference.pixel_chain`):

- "official": full decode (or a JPEG draft when `inference.jpeg_draft`), Pillow LANCZOS cap
  (reducing_gap 3), then the cv2-semantics float resize of `preprocess_multiscale`. Bit for bit
  what `decode_image` + `prepare_image` compute, so official DOLG checkpoints keep their parity.
- "fast": JPEG/MPO decode at the smallest 1/2, 1/4 or 1/8 DCT scale whose size still covers
  the capped size (libjpeg-turbo scales in the DCT domain: a 4032x3024 photo under a 512 px cap
  decodes at 1008x756 and never exists at full size), then Pillow's antialiased bicubic on
  uint8 for the cap and every scale, then the affine normalisation at the scale's size. Other
  formats have no reduced decode in Pillow: they decode fully, and the cap is a box `reduce`
  first (reducing_gap 3) then bicubic, so its cost stays bounded.

The working image is at most max_side on its long side, uint8: no float copy of it is kept and
no full-size pixels survive the decode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from app.artifacts import Preprocessing
from app.inference.preprocess import (
    BBox,
    cap_scale,
    capped_size,
    crop_bbox,
    decode_pil,
    normalise_planar,
    preprocess_multiscale,
    scale_sizes,
)

logger = logging.getLogger(__name__)

PixelChain = Literal["official", "fast"]

# Beyond a 3x reduction Pillow box-reduces by an integer factor first (cirtorch's cap uses
# the same trick); it bounds the cost of the cap for big non-JPEG uploads.
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class DecodedImage:
    """One upload, decoded once, at the working size.

    pixels: [h, w, 3] uint8 RGB, read-only, EXIF-oriented, long side <= the model's max_side
    (the capped image every consumer starts from). upload_size: (W, H) of the upload itself,
    EXIF-oriented (bboxes are given in these pixels). crop_scale: what maps upload pixels onto
    `pixels` for a bbox: the cap factor when the file was decoded at full size, else the
    per-axis ratio (w / W, h / H) of a DCT-scaled decode.
    """

    pixels: np.ndarray
    upload_size: tuple[int, int]
    crop_scale: float | tuple[float, float]
    format: str
    chain: PixelChain

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the working image."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def image(self) -> Image.Image:
        """A new Pillow RGB image of the working pixels (a copy at working size)."""
        return Image.fromarray(self.pixels)

    def grey(self, long_side: int) -> np.ndarray:
        """[h', w'] uint8 luma, long side <= long_side (never enlarged): a view for keypoint
        matching and other consumers that want a small grey image."""
        img = self.image().convert("L")
        w, h = capped_size(img.width, img.height, long_side)
        if (w, h) != img.size:
            img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP)
        return np.asarray(img)


def decode_working_image(
    data: bytes,
    prep: Preprocessing,
    max_pixels: int,
    chain: PixelChain,
    jpeg_draft: bool = False,
) -> DecodedImage:
    """Upload bytes -> DecodedImage at the working size of `chain` (see the module doc).

    `jpeg_draft` lets the official chain decode JPEGs at a reduced DCT scale too (the older
    `inference.jpeg_draft` setting); the fast chain always does. Raises what `decode_image`
    raises (InvalidImage, UnsupportedMediaType, PayloadTooLarge).
    """
    draft = prep.max_side if chain == "fast" or jpeg_draft else None
    rgb, upload_size = decode_pil(data, max_pixels, draft_max_side=draft)
    fmt = rgb.format or "unknown"
    decoded_size = rgb.size
    if chain == "fast":
        capped = _cap(rgb, prep.max_side, Image.Resampling.BICUBIC)
    else:
        capped = _cap(rgb, prep.max_side, Image.Resampling.LANCZOS)  # == cap_long_side
    del rgb  # the decoded pixels go as soon as the capped copy exists
    pixels = np.asarray(capped)  # [h,w,3] uint8, read-only (a copy of Pillow's buffer)
    if decoded_size == upload_size:
        crop_scale: float | tuple[float, float] = cap_scale(*upload_size, prep.max_side)
    else:
        crop_scale = (pixels.shape[1] / upload_size[0], pixels.shape[0] / upload_size[1])
    return DecodedImage(pixels, upload_size, crop_scale, fmt, chain)


def from_pixels(img: np.ndarray, prep: Preprocessing, chain: PixelChain) -> DecodedImage:
    """An image already decoded at full size (H,W,3 uint8 RGB) -> its DecodedImage: capped as
    `chain` caps, the upload size being img's own. For scripts that hold pixels, not files."""
    height, width = img.shape[:2]
    method = Image.Resampling.BICUBIC if chain == "fast" else Image.Resampling.LANCZOS
    if capped_size(width, height, prep.max_side) == (width, height):
        pixels = img  # untouched, as cap_long_side returns it
    else:
        pixels = np.asarray(_cap(Image.fromarray(np.ascontiguousarray(img)), prep.max_side, method))
    return DecodedImage(
        pixels, (width, height), cap_scale(width, height, prep.max_side), "pixels", chain
    )


def _cap(img: Image.Image, max_side: int, method: Image.Resampling) -> Image.Image:
    """Antialiased downscale so the long side is at most max_side (never enlarges)."""
    size = capped_size(img.width, img.height, max_side)
    if size == img.size:
        return img
    return img.resize(size, method, reducing_gap=_REDUCING_GAP)


def model_inputs(
    decoded: DecodedImage, prep: Preprocessing, bbox: BBox | None = None
) -> list[np.ndarray]:
    """DecodedImage (+ a bbox in upload pixels) -> one [3,h_s,w_s] float32 input per scale."""
    img = decoded.pixels
    if bbox is not None:
        img = crop_bbox(img, bbox, decoded.crop_scale, upload_size=decoded.upload_size)
    if decoded.chain == "official":
        return preprocess_multiscale(img, prep, upload_size=decoded.upload_size)
    return fast_multiscale(img, prep, upload_size=decoded.upload_size)


def fast_multiscale(
    img: np.ndarray, prep: Preprocessing, upload_size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """H,W,3 uint8 RGB -> one [3,h_s,w_s] float32 C-contiguous input per kept scale.

    Per scale: Pillow BICUBIC on uint8 (antialiased when downscaling, as torchvision / timm
    resize PIL images in training), then (x / divisor - mean) / std in the model's colour order
    at the scale's size. Same scale sizes and skipping rules as `preprocess_multiscale`.
    """
    height, width = img.shape[:2]
    sizes = scale_sizes(width, height, prep, upload_size)
    source: Image.Image | None = None
    tensors: list[np.ndarray] = []
    for _, w, h in sizes:
        if (w, h) == (width, height):
            scaled = img
        else:
            if source is None:
                source = Image.fromarray(np.ascontiguousarray(img))
            scaled = np.asarray(source.resize((w, h), Image.Resampling.BICUBIC))
        tensors.append(normalise_planar(scaled, prep))  # a new [3,h,w] buffer per scale
    return tensors
