"""The photo sets: `web` = the shared JPEGs as they are; `phone` (12 MP, 4032x3024) and `camera`
(36 MP, 7360x4912) = the first few of them fitted to that size with seeded grain, saved at
quality 92 (~2 MB at 12 MP, like a phone's JPEG). Made in memory at every run (deterministic:
seeded); never committed."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from workbench.bench.common import log

PHONE_SIZE = (4032, 3024)
CAMERA_SIZE = (7360, 4912)


def upscaled_jpeg(data: bytes, size: tuple[int, int], seed: int, quality: int = 92) -> bytes:
    """A photo fitted (centre crop + bicubic) to `size` with seeded luma grain: sensor-like
    noise keeps the file as large as a real photo of that size (~2 MB at 12 MP)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        big = ImageOps.fit(img.convert("RGB"), size, Image.Resampling.BICUBIC)
    pixels = np.asarray(big, dtype=np.uint8)
    del big
    rng = np.random.default_rng(seed)
    grain = rng.integers(0, 9, size=(size[1], size[0], 1), dtype=np.uint8)  # [H,W,1] 0..8
    noisy = np.clip(pixels.astype(np.int16) + grain - 4, 0, 255).astype(np.uint8)
    del pixels
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_sets(
    photos: list[tuple[str, bytes]], phone_count: int, camera_count: int
) -> dict[str, list[tuple[str, bytes]]]:
    """{"web", "phone", "camera"} -> (name, JPEG bytes); phone seeds 0.., camera 100.."""
    t0 = time.perf_counter()
    phone = [
        (f"phone-{n}", upscaled_jpeg(b, PHONE_SIZE, i))
        for i, (n, b) in enumerate(photos[:phone_count])
    ]
    camera = [
        (f"camera-{n}", upscaled_jpeg(b, CAMERA_SIZE, 100 + i))
        for i, (n, b) in enumerate(photos[:camera_count])
    ]
    log(
        f"photos: made {len(phone)} phone and {len(camera)} camera JPEGs in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return {"web": photos, "phone": phone, "camera": camera}


def describe(blobs: list[tuple[str, bytes]]) -> dict[str, Any]:
    """How many files, their distinct pixel sizes ("WxH", sorted) and their mean byte size."""
    from PIL import Image

    sizes = {Image.open(io.BytesIO(b)).size for _, b in blobs}
    return {
        "count": len(blobs),
        "sizes": sorted(f"{w}x{h}" for w, h in sizes),
        "mean_bytes": int(np.mean([len(b) for _, b in blobs])),
    }
