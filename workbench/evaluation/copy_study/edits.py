"""The edits a copy goes through (crops, resizes, grey, rotation, mirror, colour, blur, JPEG,
a reposted look) and the crops that fill the study's stores with distinct distractor items."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Edit = Callable[[Image.Image], Image.Image]


def _crop(fx: float, fy: float, w: float, h: float) -> Edit:
    """The box at (fx, fy) of w x h, all as fractions of the picture's size."""

    def apply(img: Image.Image) -> Image.Image:
        W, H = img.size
        return img.crop((int(fx * W), int(fy * H), int((fx + w) * W), int((fy + h) * H)))

    return apply


def _width(px: int) -> Edit:
    def apply(img: Image.Image) -> Image.Image:
        size = (px, max(1, round(img.height * px / img.width)))
        return img.resize(size, Image.Resampling.LANCZOS)

    return apply


def _jpeg(img: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _colour(img: Image.Image) -> Image.Image:
    r, g, b = img.split()
    warm = Image.merge(
        "RGB", (r.point(lambda v: min(255, int(v * 1.15 + 10))), g, b.point(lambda v: int(v * 0.8)))
    )
    return ImageEnhance.Contrast(ImageEnhance.Color(warm).enhance(1.6)).enhance(1.2)


def _repost(img: Image.Image) -> Image.Image:
    """Cropped a little, framed, captioned, shrunk and re-encoded: a screenshot-style repost."""
    W, H = img.size
    inner = img.crop((int(0.05 * W), int(0.05 * H), int(0.95 * W), int(0.92 * H)))
    pad = int(0.08 * inner.width)
    framed = ImageOps.expand(inner, border=(pad, pad, pad, 3 * pad), fill=(250, 250, 250))
    draw = ImageDraw.Draw(framed)
    draw.rectangle(
        (pad, framed.height - 2 * pad, framed.width - pad, framed.height - pad // 2),
        fill=(20, 20, 20),
    )
    draw.text((2 * pad, framed.height - 1.7 * pad), "look at this!! #repost", fill=(255, 255, 0))
    return _jpeg(_width(600)(framed), 60)


EDITS: dict[str, Edit] = {
    "crop_50_centre": _crop(0.25, 0.25, 0.5, 0.5),
    "crop_50_corner": _crop(0.45, 0.05, 0.5, 0.5),
    "crop_70": _crop(0.15, 0.15, 0.7, 0.7),
    "width_200": _width(200),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "grey_crop_60": lambda im: ImageOps.grayscale(_crop(0.1, 0.3, 0.6, 0.6)(im)).convert("RGB"),
    "rotate_90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "mirror": ImageOps.mirror,
    "mirror_crop_70": lambda im: ImageOps.mirror(_crop(0.2, 0.1, 0.7, 0.7)(im)),
    "colour": _colour,
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "jpeg_q15": lambda im: _jpeg(im, 15),
    "repost": _repost,
    "rotate_90_width_300": lambda im: _width(300)(im.transpose(Image.Transpose.ROTATE_270)),
}
# The edits a never-stored distractor is also queried with.
NEGATIVE_EDITS = ["grey", "crop_50_centre", "width_200", "repost"]


def jpeg_bytes(img: Image.Image, q: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=q)
    return buf.getvalue()


def load_rgb(path: Path, long_side: int = 1024) -> Image.Image:
    """The picture upright (EXIF), RGB, shrunk to `long_side` at most."""
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    rgb.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return rgb


def tiles(img: Image.Image, n: int) -> list[Image.Image]:
    """The n x n tiles of a picture (distinct crops of one picture), row by row."""
    w, h = img.width // n, img.height // n
    return [img.crop((i * w, j * h, (i + 1) * w, (j + 1) * h)) for j in range(n) for i in range(n)]


def crops(img: Image.Image) -> list[Image.Image]:
    """Its halves (left, right, top, bottom), 2x2 and 3x3 tiles: 17 items besides the whole."""
    W, H = img.size
    halves = [
        img.crop((0, 0, W // 2, H)),
        img.crop((W // 2, 0, W, H)),
        img.crop((0, 0, W, H // 2)),
        img.crop((0, H // 2, W, H)),
    ]
    return halves + tiles(img, 2) + tiles(img, 3)
