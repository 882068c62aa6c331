"""What the copy verdict costs per image search, measured through the service: edited copies
of indexed photos searched twice (cold, then warm feature cache), the service's own `verify`
and `embed` timings of each search side by side."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.config import Settings
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.service import SearchService
from workbench.evaluation.copy_study.edits import EDITS, jpeg_bytes

# Edits of the copy-verdict study that a search here is made with (a half crop, grey, mirror).
QUERY_EDITS = ("crop_50_centre", "grey", "mirror")


def edited_queries(photos: list[Path]) -> list[bytes]:
    """JPEG bytes of each photo under each of QUERY_EDITS, photo by photo."""
    queries = []
    for p in photos:
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        queries += [jpeg_bytes(EDITS[name](rgb)) for name in QUERY_EDITS]
    return queries


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "n": len(values),
    }


async def search_pass(svc: SearchService, queries: list[bytes]) -> dict[str, Any]:
    """Every query through search_image (top 10): its embed and verify timings."""
    embed, verify, matched = [], [], 0
    for q in queries:
        res = await svc.search_image(q, top_k=10)
        embed.append(res.timings_ms["embed"])
        verify.append(res.timings_ms["verify"])
        matched += any(h.match for h in res.hits)
    return {
        "embed_ms": _summary(embed),
        "verify_ms": _summary(verify),
        "verify_over_embed_p50": round(float(np.median(np.asarray(verify) / np.asarray(embed))), 3),
        "searches_with_a_match": matched,
    }


async def measure(model_dir: Path, photos_dir: Path) -> dict[str, Any]:
    """The .jpg photos of `photos_dir` indexed with their thumbnails, then searched by their
    edited copies: a cold pass and a warm one."""
    photos = sorted(photos_dir.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.start(Settings(data_dir=Path(tmp), model_dir=model_dir), Metrics())
        try:
            runtime.embedder.warmup()
            svc = runtime.service
            blobs = [p.read_bytes() for p in photos]
            await svc.index_images(blobs, [p.name for p in photos], [None] * len(photos))
            queries = edited_queries(photos)
            out: dict[str, Any] = {
                "load_before": os.getloadavg()[0],
                "store": len(svc.store),
                "queries": len(queries),
                "verdict": svc.verdict.rule.as_dict(),
            }
            for label in ("cold_cache", "warm_cache"):
                out[label] = await search_pass(svc, queries)
            out["load_after"] = os.getloadavg()[0]
            out["cpu_count"] = os.cpu_count()
            return out
        finally:
            runtime.close()
