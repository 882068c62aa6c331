#!/usr/bin/env python
"""Store backends side by side: the Milvus backend vs raw pymilvus vs the FAISS backend.

    python scripts/bench_milvus.py --n 100000 [--milvus-uri URI] [--consistency Strong,Session]

Prints one JSON object (last stdout line). Without --milvus-uri it starts the real Milvus
2.3.5 standalone server from the `milvus` wheel (scripts/milvus_server.py) in a temporary
directory, with Milvus's default 200 ms time tick, and stops it at the end.

Data as in scripts/bench_store.py: n clustered 512-d unit vectors (fp16), perturbed database
vectors as queries, exact inner-product top-10 over the fp16 rows as ground truth.

Measured, each side with the same index and search parameters:
  add        durable adds in batches (`--batch`): MilvusStore.add (upsert, acknowledged by
             Milvus) vs raw `MilvusClient.insert` of the same rows into a twin collection
             (first `--raw-add-n` rows) vs FaissStore.add (fp16 rows fsync'd + sqlite commit)
  build      Milvus: flush + wait until every row is indexed (HNSW M16 efC200 by default);
             FAISS: background IVF-PQ training over all rows (the store's own parameters)
  search     single-query p50/p99 and batched QPS (batches of `--batch-queries`), recall@10;
             Milvus backend and raw `client.search` on the same collection with the same ef
             and consistency level, for each level in --consistency; FAISS backend with its
             defaults (nprobe 16, 80 candidates re-scored exactly)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scripts.bench_common import log, machine_info, summarize_s
from scripts.bench_store import (
    DIM,
    K,
    clustered_unit_vectors,
    exact_topk,
    perturbed_queries,
    recall_at_k,
)


def _ids(start: int, stop: int) -> list[str]:
    return [f"v{i:08d}" for i in range(start, stop)]


def _id_and_metadata(hit: Any) -> str:
    """The id, after touching the metadata as a client would (pymilvus decodes lazily)."""
    entity = hit["entity"]
    _ = entity["metadata"] if entity.get("has_metadata") else None
    return str(hit["id"])


def _positions(hit_ids: list[list[str]]) -> np.ndarray:
    """Ids "v%08d" -> int64 [Q, K] database positions (-1 padded) for recall_at_k."""
    out = np.full((len(hit_ids), K), -1, dtype=np.int64)
    for i, ids in enumerate(hit_ids):
        rows = [int(h[1:]) for h in ids[:K]]
        out[i, : len(rows)] = rows
    return out


@contextlib.contextmanager
def _milvus(uri: str | None, workdir: Path) -> Iterator[str]:
    if uri:
        yield uri
        return
    from scripts.milvus_server import LocalMilvus

    server = LocalMilvus(workdir / "milvus").start(timeout=300)
    try:
        yield server.uri
    finally:
        server.stop()


def _search_side(
    search_one: Any, search_many: Any, queries: np.ndarray, single: int, batch: int
) -> dict[str, Any]:
    """search_one(q [D]) -> ids; search_many(q [B, D]) -> list of ids lists."""
    search_one(queries[0])  # warm-up
    search_many(queries[:batch])
    lat = []
    for q in queries[:single]:
        t = time.perf_counter()
        search_one(q)
        lat.append(time.perf_counter() - t)
    found: list[list[str]] = []
    t = time.perf_counter()
    for start in range(0, queries.shape[0], batch):
        found += search_many(queries[start : start + batch])
    elapsed = time.perf_counter() - t
    return {
        "single": summarize_s(lat),
        "batch_qps": round(queries.shape[0] / elapsed, 1),
        "found": _positions(found),
    }


def bench_milvus(
    uri: str, db16: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    from pymilvus import MilvusClient

    from app.config import IndexSettings, StoreSettings
    from app.index.milvus_store import MilvusStore

    n = db16.shape[0]
    settings = StoreSettings(
        backend="milvus",
        milvus_uri=uri,
        milvus_collection="bench_backend",
        milvus_index_type=args.index_type,
        milvus_timeout_s=600.0,
    )
    client = MilvusClient(uri=uri, timeout=600)
    for name in ("bench_backend", "bench_raw"):
        if client.has_collection(name):
            client.drop_collection(name)
    store = MilvusStore.open(settings, DIM, IndexSettings(), model_sha256="bench")
    out: dict[str, Any] = {"index_type": args.index_type, "build_params": store.build_params()}

    # Adds: the backend (validation, fp16 rounding, JSON metadata, upsert) ...
    lat = []
    t_add = time.perf_counter()
    for start in range(0, n, args.batch):
        stop = min(n, start + args.batch)
        x = db16[start:stop].astype(np.float32)
        meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
        t = time.perf_counter()
        store.add(_ids(start, stop), x, meta)
        lat.append(time.perf_counter() - t)
    add_s = time.perf_counter() - t_add
    out["add_backend"] = {
        "batch": args.batch,
        "vectors_per_s": round(n / add_s, 1),
        "batch_latency": summarize_s(lat),
    }
    log(f"milvus backend: {n} adds in {add_s:.1f}s")

    # ... and raw inserts of the same rows (same schema) into a twin collection.
    raw_n = min(n, args.raw_add_n)
    client.create_collection(
        "bench_raw",
        schema=_raw_schema(),
        consistency_level="Strong",
    )
    lat = []
    t_add = time.perf_counter()
    for start in range(0, raw_n, args.batch):
        stop = min(raw_n, start + args.batch)
        rows = [
            {
                "id": f"v{i:08d}",
                "vector": v,
                "metadata": {"path": f"images/{i:08d}.jpg"},
                "has_metadata": True,
                "thumbnail": "",
                "created_at": 0.0,
            }
            for i, v in zip(range(start, stop), db16[start:stop].astype(np.float32).tolist(),
                            strict=True)
        ]
        t = time.perf_counter()
        client.insert("bench_raw", rows)
        lat.append(time.perf_counter() - t)
    raw_s = time.perf_counter() - t_add
    out["add_raw_pymilvus"] = {
        "rows": raw_n,
        "batch": args.batch,
        "vectors_per_s": round(raw_n / raw_s, 1),
        "batch_latency": summarize_s(lat),
    }
    client.drop_collection("bench_raw")
    log(f"raw pymilvus: {raw_n} inserts in {raw_s:.1f}s")

    t = time.perf_counter()
    built = store.wait_for_index(timeout=args.build_timeout)
    out["index_build_s"] = round(time.perf_counter() - t, 1)
    out["index_built"] = built
    out["index_progress"] = {
        k: v for k, v in store.stats().index_params.items() if k.endswith("rows") or k == "state"
    }
    log(f"milvus index build: {out['index_build_s']}s (complete: {built})")
    # Release + load: the query node then serves the indexed sealed segments (right after a
    # build it may still search the growing ones by brute force).
    t = time.perf_counter()
    client.release_collection("bench_backend")
    client.load_collection("bench_backend", timeout=args.build_timeout)
    out["load_s"] = round(time.perf_counter() - t, 1)

    ef = max(settings.milvus_ef, K)
    store.close()
    for level in args.consistency.split(","):
        # The backend at this consistency level, on the same collection.
        at_level = settings.model_copy(update={"milvus_consistency": level})
        store = MilvusStore.open(at_level, DIM, IndexSettings(), model_sha256="bench")
        side = _search_side(
            lambda q, s=store: [h.id for h in s.search(q[None], K)[0]],
            lambda qs, s=store: [[h.id for h in hits] for hits in s.search(qs, K)],
            queries,
            args.single,
            args.batch_queries,
        )
        raw = _search_side(
            # Raw reads what the backend reads (id + metadata): pymilvus decodes lazily.
            lambda q, lv=level: [
                _id_and_metadata(r)
                for r in client.search(
                    "bench_backend", data=[q.tolist()], limit=K,
                    output_fields=["metadata", "has_metadata"],
                    search_params={"metric_type": "IP", "params": {"ef": ef}},
                    consistency_level=lv,
                )[0]
            ],
            lambda qs, lv=level: [
                [_id_and_metadata(r) for r in hits]
                for hits in client.search(
                    "bench_backend", data=qs.tolist(), limit=K,
                    output_fields=["metadata", "has_metadata"],
                    search_params={"metric_type": "IP", "params": {"ef": ef}},
                    consistency_level=lv,
                )
            ],
            queries,
            args.single,
            args.batch_queries,
        )  # fmt: skip
        out[f"search_{level}"] = {
            "ef": ef,
            "backend": {k: v for k, v in side.items() if k != "found"},
            "raw_pymilvus": {k: v for k, v in raw.items() if k != "found"},
            "recall_at_10": {
                "backend": recall_at_k(side["found"], truth),
                "raw_pymilvus": recall_at_k(raw["found"], truth),
            },
        }
        log(f"milvus search ({level}): {out[f'search_{level}']}")
        store.close()
    client.drop_collection("bench_backend")
    client.close()
    return out


def _raw_schema() -> Any:
    """The backend's schema, built with pymilvus directly (same fields and types)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("has_metadata", DataType.BOOL)
    schema.add_field("thumbnail", DataType.VARCHAR, max_length=65535)
    schema.add_field("created_at", DataType.DOUBLE)
    return schema


def bench_faiss(
    workdir: Path,
    db16: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from app.config import IndexSettings
    from app.index.faiss_store import FaissStore

    n = db16.shape[0]
    settings = IndexSettings(ivf_min_vectors=n, snapshot_every=n * 10, retrain_growth=1000.0)
    store = FaissStore.open(workdir / "faiss", DIM, settings)
    lat = []
    t_add = time.perf_counter()
    for start in range(0, n, args.batch):
        stop = min(n, start + args.batch)
        meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
        t = time.perf_counter()
        store.add(_ids(start, stop), db16[start:stop].astype(np.float32), meta)
        lat.append(time.perf_counter() - t)
    add_s = time.perf_counter() - t_add
    t = time.perf_counter()
    store.wait_for_training()
    train_s = time.perf_counter() - t
    side = _search_side(
        lambda q: [h.id for h in store.search(q[None], K)[0]],
        lambda qs: [[h.id for h in hits] for hits in store.search(qs, K)],
        queries,
        args.single,
        args.batch_queries,
    )
    stats = store.stats()
    store.close()
    log(f"faiss backend: adds {add_s:.1f}s, training {train_s:.1f}s")
    return {
        "index": stats.index_params.get("factory"),
        "nprobe": stats.index_params.get("nprobe"),
        "add": {
            "batch": args.batch,
            "vectors_per_s": round(n / add_s, 1),
            "batch_latency": summarize_s(lat),
        },
        "train_s": round(train_s, 1),
        "search": {k: v for k, v in side.items() if k != "found"},
        "recall_at_10": recall_at_k(side["found"], truth),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200, help="single-query samples")
    parser.add_argument("--batch", type=int, default=500, help="vectors per add call")
    parser.add_argument("--batch-queries", type=int, default=100)
    parser.add_argument("--raw-add-n", type=int, default=20_000)
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument("--index-type", default="HNSW")
    parser.add_argument("--consistency", default="Strong,Session")
    parser.add_argument("--build-timeout", type=float, default=900.0)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    db16 = clustered_unit_vectors(args.n, DIM, args.seed)
    queries = perturbed_queries(db16, args.queries, args.seed)
    truth = exact_topk(db16, queries, K)
    log(f"data: {args.n} x {DIM}, {args.queries} queries, ground truth in "
        f"{time.perf_counter() - t0:.1f}s")
    result: dict[str, Any] = {
        "n": args.n,
        "dim": DIM,
        "queries": args.queries,
        "machine": machine_info(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-milvus-") as tmp:
        work = Path(tmp)
        with _milvus(args.milvus_uri, work) as uri:
            result["milvus"] = bench_milvus(uri, db16, queries, truth, args)
        if not args.skip_faiss:
            result["faiss"] = bench_faiss(work, db16, queries, truth, args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
