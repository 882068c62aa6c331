"""Views of a photo for instance-discrimination training: random crops, rotations, colour,
blur, rescaling, occluders and JPEG re-encodings, each class's views written to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


def load_photo(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def cap(img: Image.Image, side: int) -> Image.Image:
    if max(img.size) <= side:
        return img
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def tiles(img: Image.Image, n: int) -> list[Image.Image]:
    """n x n non-overlapping tiles, row-major."""
    w, h = img.size
    xs = [round(i * w / n) for i in range(n + 1)]
    ys = [round(i * h / n) for i in range(n + 1)]
    return [img.crop((xs[c], ys[r], xs[c + 1], ys[r + 1])) for r in range(n) for c in range(n)]


def random_view(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """One random distortion of `img` and the JPEG quality to save it with.

    Geometry: a crop of 35-100% of the area (aspect within 3/4..4/3 of the image's), a small
    rotation (p=0.3). Photometry: brightness / contrast / saturation jitter, grey (p=0.1),
    blur (p=0.2), down-and-up rescaling (p=0.2), a coloured occluder (p=0.15), JPEG quality
    30-95. These are the kinds of change the near-duplicate queries contain, drawn at random.
    """
    w, h = img.size
    area = rng.uniform(0.35, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = min(w, max(8, round(w * np.sqrt(area * ratio))))
    ch = min(h, max(8, round(h * np.sqrt(area / ratio))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.uniform() < 0.3:
        angle = rng.uniform(-12, 12)
        rotated = out.rotate(angle, resample=Image.Resampling.BILINEAR)
        m = 0.1  # trim the black corners the rotation leaves
        rw, rh = rotated.size
        out = rotated.crop((round(m * rw), round(m * rh), round((1 - m) * rw), round((1 - m) * rh)))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    if rng.uniform() < 0.1:
        out = ImageOps.grayscale(out).convert("RGB")
    if rng.uniform() < 0.2:
        out = out.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 2.0)))
    if rng.uniform() < 0.2:
        f = rng.uniform(0.3, 0.7)
        small = out.resize(
            (max(1, round(out.width * f)), max(1, round(out.height * f))), Image.Resampling.BILINEAR
        )
        out = small.resize(out.size, Image.Resampling.BILINEAR)
    if rng.uniform() < 0.15:
        ow, oh = out.size
        bw, bh = round(ow * rng.uniform(0.1, 0.3)), round(oh * rng.uniform(0.1, 0.3))
        bx, by = int(rng.integers(0, ow - bw + 1)), int(rng.integers(0, oh - bh + 1))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        out = out.copy()
        ImageDraw.Draw(out).rectangle((bx, by, bx + bw, by + bh), fill=colour)
    return out, int(rng.integers(30, 96))


def render_class(job: dict[str, Any]) -> list[str]:
    """Write one class's views; returns their paths relative to the output folder."""
    img = load_photo(Path(job["photo"]))
    if job["tiles"] > 1:
        img = tiles(img, job["tiles"])[job["tile"]]
    folder = Path(job["out"]) / "train" / job["name"]
    folder.mkdir(parents=True, exist_ok=True)
    if job["views"] == 0:
        cap(img, job["view_side"]).save(folder / "original.jpg", quality=92)
        return [f"train/{job['name']}/original.jpg"] * job["repeats"]
    written = []
    for v in range(job["views"]):
        rng = np.random.default_rng((job["seed"], job["class_id"], v))
        view, quality = random_view(img, rng)
        cap(view, job["view_side"]).save(folder / f"v{v:03d}.jpg", quality=quality)
        written.append(f"train/{job['name']}/v{v:03d}.jpg")
    return written
