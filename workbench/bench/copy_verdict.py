#!/usr/bin/env python
"""What the copy verdict costs per image search; prints JSON.

    python -m workbench.bench.copy_verdict --model-dir index_data/model \
        --photos ../shared/data/photos

Indexes the shared photos (with their thumbnails) through the service, then searches with
edited copies of them (half crops, grey, mirror) and reports, per search, the service's own
timings: `verify` (the verdict: query SIFT, stored thumbnails' SIFT on a cache miss, matching,
RANSAC) beside `embed` (decode + model) of the same search, cold cache (first pass) and warm
(second pass), so the ratio holds on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from app.config import Settings
from app.metrics import Metrics
from app.runtime import Runtime


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


EDITS = {
    "crop_50": lambda im: im.crop(
        (im.width // 4, im.height // 4, 3 * im.width // 4, 3 * im.height // 4)
    ),
    "grey": lambda im: ImageOps.grayscale(im),
    "mirror": ImageOps.mirror,
}


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "n": len(values),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    photos = sorted(args.photos.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.start(Settings(data_dir=Path(tmp), model_dir=args.model_dir), Metrics())
        try:
            runtime.embedder.warmup()
            svc = runtime.service
            blobs = [p.read_bytes() for p in photos]
            await svc.index_images(blobs, [p.name for p in photos], [None] * len(photos))
            queries = []
            for p in photos:
                with Image.open(p) as im:
                    rgb = im.convert("RGB")
                queries += [_jpeg(fn(rgb)) for fn in EDITS.values()]
            out: dict[str, Any] = {
                "load_before": os.getloadavg()[0],
                "store": len(svc.store),
                "queries": len(queries),
                "verdict": svc.verdict.rule.as_dict(),
            }
            for label in ("cold_cache", "warm_cache"):
                embed, verify, matched = [], [], 0
                for q in queries:
                    res = await svc.search_image(q, top_k=10)
                    embed.append(res.timings_ms["embed"])
                    verify.append(res.timings_ms["verify"])
                    matched += any(h.match for h in res.hits)
                out[label] = {
                    "embed_ms": _summary(embed),
                    "verify_ms": _summary(verify),
                    "verify_over_embed_p50": round(
                        float(np.median(np.asarray(verify) / np.asarray(embed))), 3
                    ),
                    "searches_with_a_match": matched,
                }
            out["load_after"] = os.getloadavg()[0]
            out["cpu_count"] = os.cpu_count()
            return out
        finally:
            runtime.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", type=Path, default=Path("index_data/model"))
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
