"""CPU ms per image of each stage of the service's pixel chain on one thread (decode, which
includes the long-side cap; resize = crop + scales; thumbnail), next to the raw model on the
exact tensors, and the chain before the one-decode path measured in the same run (full decode,
numpy LANCZOS cap, cv2-style float resize, thumbnail decoded again from the bytes)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from workbench.bench.common import loadavg
from workbench.bench.raw_ort import RawOrt

STAGES = ("decode_ms", "resize_ms", "thumbnail_ms")


def resolved_chain(settings: Any, meta: Any) -> Any:
    """ "official" or "fast": the setting, or the artifact's own when "auto"."""
    chain = settings.inference.pixel_chain
    return meta.preprocessing.pixel_chain if chain == "auto" else chain


def stage_costs(
    blobs: list[bytes], settings: Any, meta: Any, raw: RawOrt, reps: int = 2
) -> dict[str, Any]:
    """CPU ms per image of each stage on this thread (best of `reps` passes), the raw model's
    wall ms on the same inputs, and the previous chain's stages for comparison."""
    from app.inference.preprocess import cap_long_side, decode_image, preprocess_multiscale
    from app.inference.working import decode_working_image, model_inputs
    from app.thumbnails import make_thumbnail, thumbnail_jpeg

    prep, chain = meta.preprocessing, resolved_chain(settings, meta)
    limit, thumbs = settings.limits.max_pixels, settings.thumbnails

    def now_chain() -> tuple[list[float], list[list[np.ndarray]]]:
        t = [0.0, 0.0, 0.0]
        tensors = []
        for data in blobs:
            c0 = time.process_time()
            img = decode_working_image(data, prep, limit, chain, settings.inference.jpeg_draft)
            c1 = time.process_time()
            tensors.append(model_inputs(img, prep))
            c2 = time.process_time()
            thumbnail_jpeg(img.pixels, thumbs)
            c3 = time.process_time()
            for i, v in enumerate((c1 - c0, c2 - c1, c3 - c2)):
                t[i] += v * 1e3 / len(blobs)
        return t, tensors

    def before_chain() -> list[float]:
        t = [0.0, 0.0, 0.0]
        for data in blobs:
            c0 = time.process_time()
            img = decode_image(data, limit)
            c1 = time.process_time()
            preprocess_multiscale(cap_long_side(img, prep.max_side), prep)
            c2 = time.process_time()
            make_thumbnail(data, thumbs, limit)
            c3 = time.process_time()
            del img
            for i, v in enumerate((c1 - c0, c2 - c1, c3 - c2)):
                t[i] += v * 1e3 / len(blobs)
        return t

    runs = [now_chain() for _ in range(reps)]
    best, tensors = min(runs, key=lambda r: sum(r[0]))
    before = min((before_chain() for _ in range(reps)), key=sum)
    _, lat = raw.per_image(tensors)
    infer_ms = float(np.median(lat)) * 1e3
    return {
        "chain": chain,
        "cpu_ms_per_image": per_stage(best),
        "raw_inference_ms_per_image": round(infer_ms, 2),
        "before_cpu_ms_per_image": per_stage(before),
        "loadavg": loadavg(),
    }


def per_stage(ms: list[float]) -> dict[str, float]:
    """[decode, resize, thumbnail] ms -> the named stages and their total, to 0.01 ms."""
    return {
        **{k: round(v, 2) for k, v in zip(STAGES, ms, strict=True)},
        "total_ms": round(sum(ms), 2),
    }
