#!/usr/bin/env python
"""Store backends side by side: the Milvus backend vs raw pymilvus vs the FAISS backend.

    python -m workbench.bench.milvus --n 100000 [--dim 1280] [--index-types HNSW,IVF_SQ8]
        [--milvus-uri URI] [--consistency Strong,Session] [--time-tick-ms 10]

Prints one JSON object (last stdout line). Without --milvus-uri it starts the real Milvus
2.3.5 standalone server from the `milvus` wheel (workbench/servers/milvus_server.py) in a temporary
directory with the time tick of the servers this project ships (`--time-tick-ms`, default
workbench.servers.milvus_server's), records its resident memory (now and peak) after each phase, and
stops it at the end.

Data as in workbench/bench/store.py: n clustered `--dim`-d unit vectors (fp16), perturbed
database vectors as queries, exact inner-product top-10 over the fp16 rows as ground truth.

Measured, each side with the same index and search parameters:
  add        durable adds in batches (`--batch`): MilvusStore.add (upsert, acknowledged by
             Milvus) vs raw `MilvusClient.insert` of the same rows into a twin collection
             (first `--raw-add-n` rows) vs FaissStore.add (fp16 rows fsync'd + sqlite commit)
  build      Milvus, per index type in --index-types (each in a fresh collection of the same
             rows): flush + wait until every row is indexed, then load; FAISS: background
             IVF-PQ training
  search     single-query p50/p99 and batched QPS (batches of `--batch-queries`), recall@10;
             Milvus backend and raw `client.search` on the same collection with the same
             request (ef / nprobe, candidates, output fields; IVF_PQ/IVF_SQ8 candidates
             re-scored exactly on both sides, plus raw pymilvus's plain top-10 for reference),
             for each level in --consistency; FAISS backend with its defaults
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import log, machine_info, summarize_s
from workbench.bench.store import (
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


class ServerMemory:
    """Resident memory of the Milvus server process (MiB), when this script started it."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: dict[str, dict[str, float]] = {}

    def record(self, phase: str) -> None:
        if self.pid is None:
            return
        fields: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = round(int(value.split()[0]) / 1024, 1)
        self.samples[phase] = {
            "rss_mib": fields.get("VmRSS", 0.0),
            "peak_rss_mib": fields.get("VmHWM", 0.0),
        }
        log(f"milvus server memory after {phase}: {self.samples[phase]}")


@contextlib.contextmanager
def _milvus(
    uri: str | None, workdir: Path, time_tick_ms: int | None
) -> Iterator[tuple[str, ServerMemory]]:
    if uri:
        yield uri, ServerMemory(None)
        return
    from workbench.servers.milvus_server import LocalMilvus

    server = LocalMilvus(workdir / "milvus")
    if time_tick_ms is not None:
        server.time_tick_ms = time_tick_ms
    server.start(timeout=300)
    try:
        yield server.uri, ServerMemory(server.pid)
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


def _raw_searcher(
    client: Any, collection: str, request: dict[str, Any], rescore: bool, level: str
) -> Any:
    """Raw pymilvus doing what the backend asks Milvus for: `request` holds limit, params and
    output fields; with `rescore`, candidates are re-scored exactly from their vectors and the
    top K kept, as the backend does for the quantised indexes."""

    def search(qs: np.ndarray) -> list[list[str]]:
        results = client.search(collection, data=qs.tolist(), consistency_level=level, **request)
        out = []
        for q, hits in zip(qs, results, strict=True):
            if rescore:
                vecs = np.asarray([h["entity"]["vector"] for h in hits], dtype=np.float32)
                order = np.argsort(-(vecs @ q), kind="stable")[:K] if len(hits) else ()
                out.append([_id_and_metadata(hits[int(i)]) for i in order])
            else:
                out.append([_id_and_metadata(h) for h in hits][:K])
        return out

    return search


def _build_index(client: Any, store: Any, timeout: float) -> dict[str, Any]:
    """Flush, wait until every row is indexed, then release + load: the query node then serves
    the indexed sealed segments (right after a build it may still search the growing ones by
    brute force)."""
    name = store.settings.collection
    t = time.perf_counter()
    built = store.wait_for_index(timeout=timeout)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    client.release_collection(name)
    client.load_collection(name, timeout=timeout)
    return {
        "index_build_s": round(build_s, 1),
        "index_built": built,
        "load_s": round(time.perf_counter() - t, 1),
    }


def _add_rows(store: Any, db16: np.ndarray, batch: int) -> dict[str, Any]:
    """Every row through MilvusStore.add in calls of `batch`, with one metadata object each."""
    n = db16.shape[0]
    lat = []
    t_add = time.perf_counter()
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        x = db16[start:stop].astype(np.float32)
        meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
        t = time.perf_counter()
        store.add(_ids(start, stop), x, meta)
        lat.append(time.perf_counter() - t)
        if stop % 100_000 < batch:
            log(f"milvus backend: {stop} added ({stop / (time.perf_counter() - t_add):.0f}/s)")
    add_s = time.perf_counter() - t_add
    log(f"milvus backend: {n} adds in {add_s:.1f}s")
    return {"batch": batch, "vectors_per_s": round(n / add_s, 1), "batch_latency": summarize_s(lat)}


def bench_milvus(
    uri: str,
    memory: ServerMemory,
    db16: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from pymilvus import MilvusClient

    from app.config import IndexSettings, MilvusSettings
    from app.index.milvus_store import MilvusStore

    n, dim = db16.shape
    index_types = args.index_types.split(",")
    settings = MilvusSettings(
        backend="milvus",
        uri=uri,
        collection="bench_backend",
        index_type=index_types[0],
        nlist=args.nlist,
        timeout_s=600.0,
    )
    client = MilvusClient(uri=uri, timeout=600)
    for name in ("bench_backend", "bench_raw"):
        if client.has_collection(name):
            client.drop_collection(name)
    store = MilvusStore.open(settings, dim, IndexSettings(), model_sha256="bench")
    out: dict[str, Any] = {}

    # Adds: the backend (validation, fp16 rounding, JSON metadata, upsert) ...
    out["add_backend"] = _add_rows(store, db16, args.batch)
    memory.record("adds")

    # ... and raw inserts / upserts of the same rows (same schema) into a twin collection
    # (an add that replaces an existing id is an upsert; insert is the cheapest write).
    raw_n = min(n, args.raw_add_n)
    for op in ("insert", "upsert"):
        client.create_collection("bench_raw", schema=_raw_schema(dim), consistency_level="Strong")
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
                for i, v in zip(
                    range(start, stop), db16[start:stop].astype(np.float32).tolist(), strict=True
                )
            ]
            t = time.perf_counter()
            getattr(client, op)("bench_raw", rows)
            lat.append(time.perf_counter() - t)
        raw_s = time.perf_counter() - t_add
        out[f"add_raw_pymilvus_{op}"] = {
            "rows": raw_n,
            "batch": args.batch,
            "vectors_per_s": round(raw_n / raw_s, 1),
            "batch_latency": summarize_s(lat),
        }
        client.drop_collection("bench_raw")
        log(f"raw pymilvus: {raw_n} {op}s in {raw_s:.1f}s")
    store.close()

    for position, index_type in enumerate(index_types):
        typed = settings.model_copy(update={"index_type": index_type})
        if position > 0:
            # A fresh collection with this index type and the same rows: dropping the index
            # and creating another on the same collection never built on the 2.3.5 wheel's
            # server (its index tasks retried "binlog file not exist" for 20 minutes).
            client.drop_collection(settings.collection)
        store = MilvusStore.open(typed, dim, IndexSettings(), model_sha256="bench")
        side_out: dict[str, Any] = {"build_params": store.build_params()}
        if position > 0:
            side_out["add_backend"] = _add_rows(store, db16, args.batch)
        side_out.update(_build_index(client, store, args.build_timeout))
        log(f"milvus {index_type} build: {side_out}")
        memory.record(f"{index_type} build and load")
        store.close()
        for level in args.consistency.split(","):
            side_out[f"search_{level}"] = _search_level(
                client,
                typed.model_copy(update={"consistency": level}),
                dim,
                queries,
                truth,
                args,
            )
            log(f"milvus {index_type} search ({level}): {side_out[f'search_{level}']}")
        memory.record(f"{index_type} searches")
        out[index_type] = side_out
    client.drop_collection("bench_backend")
    client.close()
    out["server_memory"] = memory.samples
    return out


def _search_level(
    client: Any,
    settings: Any,
    dim: int,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Backend vs raw pymilvus on the same collection at one consistency level."""
    from app.config import IndexSettings
    from app.index.milvus_store import MilvusStore

    idx = IndexSettings()
    kind = settings.index_type
    rescore = kind in ("IVF_PQ", "IVF_SQ8")
    # The backend's request (MilvusStore.search): candidates, breadth and fields.
    fetch = max(K * idx.candidate_factor, idx.min_candidates) if rescore else K
    params = (
        {"ef": max(settings.ef, fetch)}
        if kind == "HNSW"
        else {"nprobe": min(idx.nprobe, settings.nlist)}
    )
    fields = ["metadata", "has_metadata"] + (["vector"] if rescore else [])
    request = {
        "limit": fetch,
        "output_fields": fields,
        "search_params": {"metric_type": "IP", "params": params},
    }
    store = MilvusStore.open(settings, dim, idx, model_sha256="bench")
    # Raw reads at the level the backend reads at (Strong with strong_wait "write": Bounded).
    level = store.read_consistency
    try:
        backend = _search_side(
            lambda q: [h.id for h in store.search(q[None], K)[0]],
            lambda qs: [[h.id for h in hits] for hits in store.search(qs, K)],
            queries,
            args.single,
            args.batch_queries,
        )
    finally:
        store.close()
    raw_search = _raw_searcher(client, "bench_backend", request, rescore, level)
    raw = _search_side(
        lambda q: raw_search(q[None])[0], raw_search, queries, args.single, args.batch_queries
    )
    result: dict[str, Any] = {
        "read_consistency": level,
        "params": params,
        "candidates": fetch,
        "backend": {k: v for k, v in backend.items() if k != "found"},
        "raw_pymilvus": {k: v for k, v in raw.items() if k != "found"},
        "recall_at_10": {
            "backend": recall_at_k(backend["found"], truth),
            "raw_pymilvus": recall_at_k(raw["found"], truth),
        },
    }
    if rescore:
        # For reference: the quantised index's own top-10, no re-scoring.
        plain_request = {
            "limit": K,
            "output_fields": ["metadata", "has_metadata"],
            "search_params": request["search_params"],
        }
        plain_search = _raw_searcher(client, "bench_backend", plain_request, False, level)
        plain = _search_side(
            lambda q: plain_search(q[None])[0],
            plain_search,
            queries,
            args.single,
            args.batch_queries,
        )
        result["raw_pymilvus_top10_no_rescoring"] = {
            **{k: v for k, v in plain.items() if k != "found"},
            "recall_at_10": recall_at_k(plain["found"], truth),
        }
    return result


def _raw_schema(dim: int) -> Any:
    """The backend's schema, built with pymilvus directly (same fields and types)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
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
    from app.config import FaissStoreSettings
    from app.index.faiss_store import FaissStore

    n, dim = db16.shape
    settings = FaissStoreSettings(ivf_min_vectors=n, snapshot_every=n * 10, retrain_growth=1000.0)
    store = FaissStore.open(workdir / "faiss", dim, settings)
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
    parser.add_argument("--dim", type=int, default=512, help="1280: the default model's")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200, help="single-query samples")
    parser.add_argument("--batch", type=int, default=500, help="vectors per add call")
    parser.add_argument("--batch-queries", type=int, default=100)
    parser.add_argument("--raw-add-n", type=int, default=20_000)
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument(
        "--time-tick-ms",
        type=int,
        default=None,
        help="proxy.timeTickInterval of the started server (default: milvus_server.py's)",
    )
    parser.add_argument(
        "--index-types",
        "--index-type",
        default="HNSW",
        help="comma list, measured in turn on the same rows (HNSW, IVF_SQ8, IVF_PQ, IVF_FLAT)",
    )
    parser.add_argument(
        "--nlist",
        type=int,
        default=1024,
        help="IVF lists (Milvus builds one index per segment of ~1 GiB, so this is per segment)",
    )
    parser.add_argument("--consistency", default="Strong,Session")
    parser.add_argument("--build-timeout", type=float, default=900.0)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    db16 = clustered_unit_vectors(args.n, args.dim, args.seed)
    queries = perturbed_queries(db16, args.queries, args.seed)
    truth = exact_topk(db16, queries, K)
    log(
        f"data: {args.n} x {args.dim}, {args.queries} queries, ground truth in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    result: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "machine": machine_info(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-milvus-") as tmp:
        work = Path(tmp)
        with _milvus(args.milvus_uri, work, args.time_tick_ms) as (uri, memory):
            result["milvus"] = bench_milvus(uri, memory, db16, queries, truth, args)
        if not args.skip_faiss:
            result["faiss"] = bench_faiss(work, db16, queries, truth, args)
    result["bench_peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
