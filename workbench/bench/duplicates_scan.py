"""GET /duplicates measured through the real app (in process, FAISS backend): the first scan,
a cached page, the pages after adds and a delete, and the store's own neighbour search of the
same vectors as the raw reference."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import log
from workbench.bench.duplicates_data import near_copies, photo_thumbnails, vectors_with_copies

BATCH = 5000  # vectors per POST /index/vectors


def post_vectors(client: Any, ids: list[str], vectors: np.ndarray) -> None:
    for lo in range(0, len(ids), BATCH):
        items = [
            {"id": i, "vector": v.astype(float).tolist()}
            for i, v in zip(ids[lo : lo + BATCH], vectors[lo : lo + BATCH], strict=True)
        ]
        resp = client.post("/index/vectors", json={"items": items})
        if resp.status_code != 201:
            raise SystemExit(f"indexing failed: {resp.status_code} {resp.text[:300]}")


def add_with_thumbnails(
    service: Any, ids: list[str], vectors: np.ndarray, thumbs: list[bytes]
) -> None:
    """The vectors, each stored with thumbs[i % len(thumbs)] (in process: the JSON route for
    vectors takes no thumbnails)."""
    for lo in range(0, len(ids), BATCH):
        part = ids[lo : lo + BATCH]
        t = [thumbs[(lo + i) % len(thumbs)] for i in range(len(part))]
        service.index_vectors_sync(part, vectors[lo : lo + BATCH], [None] * len(part), t)


def get_page(client: Any) -> tuple[float, dict[str, Any]]:
    """(seconds, body) of GET /duplicates?limit=20."""
    t0 = time.perf_counter()
    resp = client.get("/duplicates", params={"limit": 20})
    elapsed = time.perf_counter() - t0
    if resp.status_code != 200:
        raise SystemExit(f"GET /duplicates: {resp.status_code} {resp.text[:300]}")
    return elapsed, resp.json()


def measure(
    n: int, copies: int, model_dir: Path, seed: int, thumbnails: Path | None = None
) -> dict[str, Any]:
    """One store of `n` vectors (`copies` of them near-copies): the figures of one size."""
    from fastapi.testclient import TestClient

    from app.config import DuplicateSettings, InferenceSettings, Settings
    from app.main import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            model_dir=model_dir,
            inference=InferenceSettings(intra_op_threads=1),
            # A scan of any size answers in one call here (the service answers 503 sooner).
            duplicates=DuplicateSettings(wait_s=3600),
        )
        with TestClient(create_app(settings)) as client:
            while client.get("/health/ready").status_code != 200:
                time.sleep(0.05)
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            dim = runtime.store.dim
            ids, vectors, base = vectors_with_copies(n, copies, dim, seed)
            log(f"n={n}: indexing {n} vectors of dim {dim}")
            thumbs = photo_thumbnails(thumbnails) if thumbnails is not None else None
            if thumbs is None:
                post_vectors(client, ids, vectors)
            else:
                add_with_thumbnails(runtime.service, ids, vectors, thumbs)
            runtime.store.wait_for_index()
            index_type = runtime.store.stats().index_type

            log(f"n={n}: first GET /duplicates (full scan)")
            scan_s, body = get_page(client)
            cached_s, _ = get_page(client)

            # Incremental: 10 new near-copies, then one delete.
            extra = near_copies(base, 10, seed + 1)
            if thumbs is None:
                post_vectors(client, [f"new{i}" for i in range(10)], extra)
            else:
                add_with_thumbnails(runtime.service, [f"new{i}" for i in range(10)], extra, thumbs)
            add_s, _ = get_page(client)
            client.delete("/items/c0")
            delete_s, after_delete = get_page(client)

            # Raw: the store's own search, single stored vectors and one batched call.
            store, k = runtime.store, settings.duplicates.neighbours + 1
            rng = np.random.default_rng(seed)
            sample = rng.choice(len(base), size=min(500, len(base)), replace=False)
            t0 = time.perf_counter()
            for row in sample:
                store.search(base[row][None, :], k)
            raw_single_s = (time.perf_counter() - t0) / len(sample)
            t0 = time.perf_counter()
            store.search(base, k)
            raw_batched_s = (time.perf_counter() - t0) / len(base)

    per_item = scan_s / n
    return {
        "n": n,
        "dim": dim,
        "index_type": index_type,
        "thumbnails": thumbnails is not None,
        "groups": body["total_groups"],
        "items_in_groups": body["total_items"],
        "first_scan_s": round(scan_s, 2),
        "scan_ms_per_item": round(per_item * 1e3, 3),
        "cached_page_ms": round(cached_s * 1e3, 2),
        "after_10_adds_ms": round(add_s * 1e3, 2),
        "after_1_delete_ms": round(delete_s * 1e3, 2),
        "groups_after_delete": after_delete["total_groups"],
        "raw_store_search_ms_per_query": round(raw_single_s * 1e3, 3),
        "raw_store_batched_ms_per_query": round(raw_batched_s * 1e3, 3),
        "scan_vs_raw_single": round(per_item / raw_single_s, 2),
        "scan_vs_raw_batched": round(per_item / raw_batched_s, 2),
    }
