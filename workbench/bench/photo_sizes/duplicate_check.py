"""CPU ms per image of POST /index's duplicate check (a by-id search of each new item, with
the copy verdict's SIFT geometry), in process over the web photos, for distinct uploads and for
re-uploads."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def duplicate_check_cost(
    blobs: list[bytes], settings: Any, work: Path, uploads: str
) -> dict[str, Any]:
    """CPU ms per image of POST /index's duplicate check (a by-id search of the new item: the
    store's neighbour search, then SIFT geometry for hits in the verdict's cosine band), on
    this process's threads, for a FAISS store built the way the service builds it.

    uploads "distinct": each photo is stored, then checked, one after the other (an archive
    of different photos). "repeated": the set is stored once, then every photo is uploaded
    again under a new id and checked (what the HTTP rows do from their second pass on: each
    upload has exact copies in the store, decided by the cosine alone, and the other
    neighbours in the band still need geometry).
    """
    from app.index.faiss_store import FaissStore
    from app.metrics import Metrics
    from app.runtime import Inference
    from app.search.service import SearchService

    inference = Inference.start(settings, Metrics())
    try:
        service = SearchService(inference.embedder, None, settings)  # type: ignore[arg-type]
        vectors, thumbs = asyncio.run(service.embed_for_index(blobs))
    finally:
        inference.close()
    folder = work / f"dupcheck-{uploads}"
    store = FaissStore.open(folder, int(vectors.shape[1]), settings.faiss_store_settings())
    service = SearchService(None, store, settings)  # type: ignore[arg-type]
    neighbours = settings.duplicates.neighbours
    n = len(blobs)
    if uploads == "repeated":
        store.add([f"stored-{i}" for i in range(n)], vectors, [None] * n, thumbs)

    async def check_all() -> tuple[float, int, int]:
        cpu = 0.0
        in_band = copies = 0
        for i in range(n):
            item_id = f"upload-{i}"
            store.add([item_id], vectors[i : i + 1], [None], [thumbs[i] if thumbs else None])
            c0 = time.process_time()
            out = await service.search_by_id(item_id, top_k=neighbours, rerank="none")
            cpu += time.process_time() - c0
            in_band += sum(service.verdict.rule.needs_geometry(h.score) for h in out.hits)
            copies += sum(h.match for h in out.hits)
        return cpu, in_band, copies

    try:
        with counting_sift_passes() as passes:
            cpu, in_band, copies = asyncio.run(check_all())
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "uploads": uploads,
        "images": n,
        "cpu_ms_per_image": round(cpu / n * 1e3, 2),
        "sift_passes_per_image": round(passes[0] / n, 2),
        "hits_in_geometry_band_per_image": round(in_band / n, 2),
        "copies_reported_per_image": round(copies / n, 2),
    }


@contextmanager
def counting_sift_passes() -> Iterator[list[int]]:
    """Counts SIFT extractions (`passes[0]`) while inside: a deterministic view of the CPU
    figure, which other load inflates. Wraps `extract` where the verify and verdict modules
    look it up, and puts the real one back on the way out."""
    import app.search.verdict as verdict_module
    import app.search.verify as verify_module

    passes = [0]
    real_extract = verify_module.extract

    def counted_extract(grey: np.ndarray) -> Any:
        passes[0] += 1
        return real_extract(grey)

    patched = [m for m in (verify_module, verdict_module) if hasattr(m, "extract")]
    for module in patched:
        module.extract = counted_extract  # type: ignore[attr-defined]
    try:
        yield passes
    finally:
        for module in patched:
            module.extract = real_extract  # type: ignore[attr-defined]
