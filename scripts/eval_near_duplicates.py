#!/usr/bin/env python
"""Near-duplicate recall@1 of a model artifact on a folder of photos, through the service code.

    python scripts/eval_near_duplicates.py --model-dir index_data/model --photos DIR \
        [--exclude-flip]

Indexes every photo of DIR in a temporary store, then searches each transformed copy
(models/evaluation/near_duplicates.py) and prints recall@1 per transform and overall as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from app.metrics import Metrics
from app.runtime import Runtime
from models.evaluation.near_duplicates import (
    TRANSFORMS,
    recall_at_1,
    transformed_queries,
)


async def evaluate(model_dir: Path, photos: list[Path], transforms: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.start(Settings(data_dir=Path(tmp), model_dir=model_dir), Metrics())
        try:
            t0 = time.perf_counter()
            blobs = [p.read_bytes() for p in photos]
            await runtime.service.index_images(
                blobs, [p.name for p in photos], [None] * len(photos)
            )
            index_s = time.perf_counter() - t0
            hits: dict[str, dict[str, str | None]] = {}
            t1 = time.perf_counter()
            nq = 0
            for photo, blob in zip(photos, blobs, strict=True):
                hits[photo.name] = {}
                for name, query in transformed_queries(blob, transforms).items():
                    out = await runtime.service.search_image(query, top_k=1)
                    hits[photo.name][name] = out.hits[0].id if out.hits else None
                    nq += 1
            search_s = time.perf_counter() - t1
        finally:
            runtime.close()
    meta = runtime.meta
    return {
        "model": {
            "name": meta.name,
            "source": meta.source.kind,
            "scales": meta.preprocessing.scales,
            "max_side": meta.preprocessing.max_side,
        },
        "photos": len(photos),
        "queries": nq,
        "recall_at_1": recall_at_1(hits),
        "index_images_per_s": round(len(photos) / index_s, 2),
        "search_ms_per_query": round(1e3 * search_s / max(nq, 1), 1),
        "misses": {
            s: [t for t, top in by.items() if top != s]
            for s, by in hits.items()
            if any(top != s for top in by.values())
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=Path("index_data/model"))
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument(
        "--exclude-flip",
        action="store_true",
        help="DOLG is not mirror-invariant; leave the flip transform out",
    )
    args = parser.parse_args()
    photos = sorted(
        p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    transforms = [t for t in TRANSFORMS if not (args.exclude_flip and t == "flip")]
    print(json.dumps(asyncio.run(evaluate(args.model_dir, photos, transforms)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
