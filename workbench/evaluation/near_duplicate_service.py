"""One artifact through the service code on a folder of photos: latency per upload, indexing,
near-duplicate recall@1 of transformed copies per re-ranking mode, and (from the same
descriptors) the same-category rate, the threshold study and the lower-precision rows."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.config import InferenceSettings, Settings
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.service import RerankMode
from models.evaluation.near_duplicates import recall_at_1, transformed_queries
from models.evaluation.similarity import nearest_other_rate
from workbench.evaluation.near_duplicate_scores import rows_study, threshold_folds


async def evaluate(
    model_dir: Path,
    photos: list[Path],
    transforms: list[str],
    reranks: list[RerankMode],
    categories: dict[str, str] | None,
    folds: int,
    query_photos: list[str] | None = None,
    pixel_chain: str = "auto",
    rescore_rows: list[str] | None = None,
) -> dict[str, Any]:
    """The figures of one artifact and pixel chain (the tool's JSON for it); every photo is
    indexed, only `query_photos` (default all) are queried and counted. `categories`: one for
    every photo; `rescore_rows`: kinds of near_duplicate_scores.ROW_KINDS."""
    names = [p.name for p in photos]
    queried = [i for i, n in enumerate(names) if query_photos is None or n in query_photos]
    blobs = [p.read_bytes() for p in photos]
    with tempfile.TemporaryDirectory() as tmp:
        inference = InferenceSettings.model_validate({"pixel_chain": pixel_chain})
        settings = Settings(data_dir=Path(tmp), model_dir=model_dir, inference=inference)
        runtime = Runtime.start(settings, Metrics())
        try:
            service = runtime.service
            latencies = []
            for blob in blobs:  # one at a time: what a single upload costs
                t0 = time.perf_counter()
                await service.embedder.embed_bytes(blob)
                latencies.append(1e3 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            originals = await service.embed_images(blobs)  # [P,D]
            index_s = time.perf_counter() - t0
            queries = [transformed_queries(b, transforms) for b in blobs]
            flat = [q[t] for q in queries for t in transforms]
            qvec = (await service.embed_images(flat)).reshape(len(photos), len(transforms), -1)
            await service.index_vectors(names, originals, [None] * len(photos))
            recall: dict[str, Any] = {}
            for mode in reranks:
                hits: dict[str, dict[str, str | None]] = {}
                for i in queried:
                    name = names[i]
                    hits[name] = {}
                    for j, t in enumerate(transforms):
                        out = await service.search_vector(qvec[i, j], top_k=1, rerank=mode)
                        hits[name][t] = out.hits[0].id if out.hits else None
                recall[mode] = {
                    "recall_at_1": {k: round(v, 4) for k, v in recall_at_1(hits).items()},
                    "misses": {
                        s: [t for t, top in by.items() if top != s]
                        for s, by in hits.items()
                        if any(top != s for top in by.values())
                    },
                }
        finally:
            runtime.close()
    meta = runtime.meta
    result: dict[str, Any] = {
        "model": {
            "name": meta.name,
            "architecture": meta.architecture,
            "backbone": meta.backbone,
            "source": meta.source.kind,
            "dim": meta.embedding_dim,
            "scales": meta.preprocessing.scales,
            "max_side": meta.preprocessing.max_side,
            "pixel_chain": runtime.embedder.chain,
        },
        "photos": len(photos),
        "queried_photos": len(queried),
        "transforms": transforms,
        "latency_ms_per_image": {
            "mean": round(statistics.fmean(latencies), 1),
            "median": round(statistics.median(latencies), 1),
        },
        "index_images_per_s": round(len(photos) / index_s, 2),
        "near_duplicates": recall,
    }
    if categories is not None:
        result["semantic_nearest_other"] = nearest_other_rate(
            originals, [categories[n] for n in names], queried
        )
    if folds >= 2:
        result["score_threshold"] = threshold_folds(originals, qvec, folds)
    if rescore_rows:
        result["rescore_rows"] = {
            kind: rows_study(kind, originals, qvec, names, queried, transforms, categories, folds)
            for kind in rescore_rows
        }
    return result
