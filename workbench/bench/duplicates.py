#!/usr/bin/env python
"""GET /duplicates benchmark: the first scan, a cached page, and the incremental updates after
adds and deletes, through the real app (in process, FAISS backend), next to the store's own
neighbour search in the same run.

    python -m workbench.bench.duplicates --n 5000,20000 [--model-dir index_data/model]

Prints one JSON object (last stdout line) with one entry per size.

Data: `n` vectors of the model's dimension as gaussian blobs on the sphere (the generator of
workbench/bench/synthetic.py; cosines to a blob centre ~0.64-0.9), plus `--copies`
near-copies of random rows (cosine ~0.97 to their source), added with POST /index/vectors.
The grouping reads each hit's `match` verdict from the search service: this bench measures
what the scan costs around whatever verdict is in place (per item: a catalog read, one by-id
search, the verdict).

`--thumbnails DIR` stores every vector with the thumbnail of one of DIR's photos (cycled), so
the verdict's geometry runs as it does on a store of uploaded images: each item's scan then
also pays SIFT on its own thumbnail and on up to `verify_top` neighbours' thumbnails.

Raw reference, same store, same run: `store.search` of single stored vectors (k + 1, what one
by-id search asks of the store) over a sample, and of all vectors in one batched call.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import loadavg, log
from workbench.bench.synthetic import clustered_unit_vectors

REPO = Path(__file__).resolve().parents[2]
BATCH = 5000


def _near_copies(db: np.ndarray, n: int, seed: int) -> np.ndarray:
    """[n, d] float32: rows of `db` plus noise, cosine ~0.97 to their source."""
    rng = np.random.default_rng(seed + 7)
    src = db[rng.choice(db.shape[0], size=n, replace=False)].astype(np.float32)
    noise = rng.standard_normal(src.shape, dtype=np.float32) / np.sqrt(src.shape[1])
    out = src + 0.25 * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _post_vectors(client: Any, ids: list[str], vectors: np.ndarray) -> None:
    for lo in range(0, len(ids), BATCH):
        items = [
            {"id": i, "vector": v.astype(float).tolist()}
            for i, v in zip(ids[lo : lo + BATCH], vectors[lo : lo + BATCH], strict=True)
        ]
        resp = client.post("/index/vectors", json={"items": items})
        if resp.status_code != 201:
            raise SystemExit(f"indexing failed: {resp.status_code} {resp.text[:300]}")


def _add_with_thumbnails(
    service: Any, ids: list[str], vectors: np.ndarray, thumbs: list[bytes]
) -> None:
    """The vectors, each stored with thumbs[i % len(thumbs)] (in process: the JSON route for
    vectors takes no thumbnails)."""
    for lo in range(0, len(ids), BATCH):
        part = ids[lo : lo + BATCH]
        t = [thumbs[(lo + i) % len(thumbs)] for i in range(len(part))]
        service.index_vectors_sync(part, vectors[lo : lo + BATCH], [None] * len(part), t)


def _photo_thumbnails(photos: Path) -> list[bytes]:
    from app.config import ThumbnailSettings
    from app.thumbnails import make_thumbnail

    out = []
    for p in sorted(photos.glob("*.jpg")):
        thumb = make_thumbnail(p.read_bytes(), ThumbnailSettings(), 1 << 30)
        if thumb is not None:
            out.append(thumb)
    if not out:
        raise SystemExit(f"{photos}: no .jpg photos to make thumbnails from")
    return out


def _get_page(client: Any) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    resp = client.get("/duplicates", params={"limit": 20})
    elapsed = time.perf_counter() - t0
    if resp.status_code != 200:
        raise SystemExit(f"GET /duplicates: {resp.status_code} {resp.text[:300]}")
    return elapsed, resp.json()


def measure(
    n: int, copies: int, model_dir: Path, seed: int, thumbnails: Path | None = None
) -> dict[str, Any]:
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
            base = clustered_unit_vectors(n - copies, dim, seed).astype(np.float32)
            dup = _near_copies(base, copies, seed)
            ids = [f"v{i}" for i in range(len(base))] + [f"c{i}" for i in range(copies)]
            log(f"n={n}: indexing {n} vectors of dim {dim}")
            thumbs = _photo_thumbnails(thumbnails) if thumbnails is not None else None
            if thumbs is None:
                _post_vectors(client, ids, np.concatenate([base, dup]))
            else:
                _add_with_thumbnails(runtime.service, ids, np.concatenate([base, dup]), thumbs)
            runtime.store.wait_for_index()
            index_type = runtime.store.stats().index_type

            log(f"n={n}: first GET /duplicates (full scan)")
            scan_s, body = _get_page(client)
            cached_s, _ = _get_page(client)

            # Incremental: 10 new near-copies, then one delete.
            extra = _near_copies(base, 10, seed + 1)
            if thumbs is None:
                _post_vectors(client, [f"new{i}" for i in range(10)], extra)
            else:
                _add_with_thumbnails(runtime.service, [f"new{i}" for i in range(10)], extra, thumbs)
            add_s, _ = _get_page(client)
            client.delete("/items/c0")
            delete_s, after_delete = _get_page(client)

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


def graph_memory(n: int, copy_fraction: float) -> dict[str, Any]:
    """Python heap of the match graph for `n` stored items, `copy_fraction` of them in pairs
    (what GET /duplicates keeps between calls), measured with tracemalloc."""
    import tracemalloc

    from app.index.store import Hit
    from app.search.match_graph import MatchGraph

    tracemalloc.start()
    graph = MatchGraph()
    pairs = int(n * copy_fraction / 2)
    for i in range(n):
        item_id = f"photos/{i:08d}.jpg"  # a typical id: ~20 characters
        hits = []
        if i < pairs:
            hits = [
                Hit(id=f"photos/{n - 1 - i:08d}.jpg", score=0.95, metadata=None, row=0, match=True)
            ]
        graph.set_matches(item_id, 1.8e9 + i, hits)
    current, _ = tracemalloc.get_traced_memory()
    t0 = time.perf_counter()
    groups = graph.groups()
    groups_s = time.perf_counter() - t0
    tracemalloc.stop()
    return {
        "graph_items": n,
        "graph_groups": len(groups),
        "graph_heap_mib": round(current / 2**20, 1),
        "grouping_s": round(groups_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="5000,20000", help="store sizes, comma-separated")
    parser.add_argument("--copy-fraction", type=float, default=0.05)
    parser.add_argument("--model-dir", type=Path, default=REPO / "index_data" / "model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--thumbnails",
        type=Path,
        help="a folder of .jpg photos: store each vector with one's thumbnail (real verifier)",
    )
    parser.add_argument(
        "--graph-n", type=int, default=1_000_000, help="items for the graph memory figure"
    )
    args = parser.parse_args(argv)
    if not (args.model_dir / "model_meta.json").is_file():
        parser.error(f"{args.model_dir}: no model_meta.json (make model, or pass --model-dir)")
    sizes = [int(s) for s in args.n.split(",") if s.strip()]
    results = []
    for n in sizes:
        copies = max(1, int(n * args.copy_fraction))
        results.append(measure(n, copies, args.model_dir, args.seed, args.thumbnails))
        log(json.dumps(results[-1]))
    memory = graph_memory(args.graph_n, args.copy_fraction) if args.graph_n else None
    print(json.dumps({"duplicates": results, "graph_memory": memory, "loadavg": loadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
