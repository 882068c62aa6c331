"""What the fast chain's choices were measured against: the candidate resizers on a phone
photo's draft decode, and onnxruntime's CPU cost per image at each batch size."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from workbench.bench.common import cpu_seconds
from workbench.bench.raw_ort import RawOrt


def resize_options(data: bytes, prep: Any, reps: int = 10) -> dict[str, float | str]:
    """CPU ms of the candidate resizers on one phone photo's 1/4-scale draft decode (uint8
    RGB -> the capped size): what chose Pillow's antialiased bicubic for the fast chain."""
    from PIL import Image

    from app.inference.preprocess import capped_size, decode_pil, normalise_planar, resize_bicubic

    img, _ = decode_pil(data, 10**9, draft_max_side=prep.max_side)
    arr = np.asarray(img)
    size = capped_size(img.width, img.height, prep.max_side)

    def cpu_ms(fn: Any) -> float:
        fn()
        c0 = time.process_time()
        for _ in range(reps):
            fn()
        return round((time.process_time() - c0) / reps * 1e3, 2)

    out = {
        f"pillow_{m.name.lower()}": cpu_ms(lambda m=m: img.resize(size, m, reducing_gap=3.0))
        for m in (
            Image.Resampling.BICUBIC,
            Image.Resampling.BILINEAR,
            Image.Resampling.LANCZOS,
            Image.Resampling.BOX,
        )
    }
    out["numpy_cv2_bicubic_float_planes"] = cpu_ms(
        lambda: resize_bicubic(normalise_planar(arr, prep).transpose(1, 2, 0), *size)
    )
    try:
        import cv2

        cv2.setNumThreads(1)
        out["opencv_inter_area"] = cpu_ms(
            lambda: cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
        )
        out["opencv_inter_cubic_no_antialiasing"] = cpu_ms(
            lambda: cv2.resize(arr, size, interpolation=cv2.INTER_CUBIC)
        )
    except ImportError:  # not a service dependency
        pass
    return {"from": f"{img.width}x{img.height}", "to": f"{size[0]}x{size[1]}", **out}


def batch_cost(
    raw: RawOrt, tensors: list[np.ndarray], sizes: tuple[int, ...] = (1, 2, 4, 8)
) -> dict[str, float]:
    """onnxruntime CPU ms per image at each batch size (one image = its scales)."""
    out = {}
    for bs in sizes:
        batches = [np.stack([t] * bs) for t in tensors]  # [bs,3,h,w] per scale
        for b in batches:
            raw.run(b)
        c0 = cpu_seconds()
        for _ in range(max(1, 8 // bs)):
            for b in batches:
                raw.run(b)
        out[f"batch_{bs}"] = round((cpu_seconds() - c0) / (bs * max(1, 8 // bs)) * 1e3, 1)
    return out
