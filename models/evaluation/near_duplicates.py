"""Near-duplicate (copy-detection) benchmark made from real photos: each photo is transformed
(crop, rotation, re-encoding, colour changes, occlusion...) and must find its source.

Pillow + numpy only: used by workbench/evaluation/near_duplicates.py and the service tests.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Transform = Callable[[Image.Image], Image.Image]


def _center_crop(frac: float) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        w, h = img.size
        cw, ch = int(w * frac), int(h * frac)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return img.crop((x0, y0, x0 + cw, y0 + ch))

    return apply


def _offset_crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(0.2 * w), int(0.1 * h), w, h))


def _rotate(deg: float) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        # Rotate, then crop to the central 80% so the black corners mostly disappear.
        return _center_crop(0.8)(img.rotate(deg, resample=Image.Resampling.BILINEAR))

    return apply


def _jpeg(quality: int) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return apply


def _colour(img: Image.Image) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(1.25)
    img = ImageEnhance.Contrast(img).enhance(0.8)
    return ImageEnhance.Color(img).enhance(1.4)


def _downscale(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, w // 3), max(1, h // 3)), Image.Resampling.BILINEAR)


def _grayscale(img: Image.Image) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


def _blur(img: Image.Image) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=2))


def _occlude(img: Image.Image) -> Image.Image:
    out = img.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle(
        (int(0.6 * w), int(0.6 * h), int(0.95 * w), int(0.95 * h)), fill=(255, 0, 255)
    )
    return out


def _channel_swap(img: Image.Image) -> Image.Image:
    r, g, b = img.split()
    return Image.merge("RGB", (b, r, g))


def _occlude_40(img: Image.Image) -> Image.Image:
    """A grey block over 40 % of the area (63 % x 63 %, top left)."""
    out = img.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle((0, 0, int(0.632 * w), int(0.632 * h)), fill=(128, 128, 128))
    return out


def _grey_crop(img: Image.Image) -> Image.Image:
    return _grayscale(_center_crop(0.6)(img))


def _combined(img: Image.Image) -> Image.Image:
    """What a re-post does: crop, colour edit, downscale, strong JPEG."""
    return _jpeg(30)(_downscale(_colour(_offset_crop(img))))


TRANSFORMS: dict[str, Transform] = {
    "crop_center_70": _center_crop(0.7),
    "crop_offset": _offset_crop,
    "rotate_8": _rotate(8.0),
    "jpeg_q20": _jpeg(20),
    "colour_jitter": _colour,
    "downscale_third": _downscale,
    "grayscale": _grayscale,
    "blur": _blur,
    "occlusion": _occlude,
    "flip": ImageOps.mirror,
}
# Harder edits, reported apart from the standard set above.
HARD_TRANSFORMS: dict[str, Transform] = {
    "crop_center_50": _center_crop(0.5),
    "grey_crop_60": _grey_crop,
    "occlusion_40": _occlude_40,
    "channel_swap": _channel_swap,
    "combined_edit": _combined,
}
ALL_TRANSFORMS: dict[str, Transform] = {**TRANSFORMS, **HARD_TRANSFORMS}


def to_jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def transformed_queries(data: bytes, names: list[str] | None = None) -> dict[str, bytes]:
    """JPEG bytes of every (or the named) transformed copy of one image."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    chosen = names or list(TRANSFORMS)
    return {n: to_jpeg_bytes(ALL_TRANSFORMS[n](img)) for n in chosen}


def recall_at_1(hits: dict[str, dict[str, str | None]]) -> dict[str, float]:
    """hits[source][transform] = top-1 id -> recall@1 per transform and overall."""
    per: dict[str, list[bool]] = {}
    for source, by_t in hits.items():
        for t, top in by_t.items():
            per.setdefault(t, []).append(top == source)
    out = {t: float(np.mean(v)) for t, v in sorted(per.items())}
    out["overall"] = float(np.mean([x for v in per.values() for x in v])) if per else 0.0
    return out
