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

Measured, each side with the same index and search parameters, the backend and raw pymilvus
interleaved (one backend call, then the raw one, alternating which goes first) so that the
other jobs of a shared machine load both alike:
  add        durable adds in batches (`--batch`): MilvusStore.add (upsert, acknowledged once
             visible) interleaved batch by batch with raw `MilvusClient.insert`, `upsert`, and
             `upsert` + one Strong read (the backend's guarantee by hand) of the same rows
             into twin collections (first `--raw-add-n` rows), then the backend's remaining
             rows (or only up to `--backend-add-n`, the rest by raw insert, to fill 1M
             faster); FaissStore.add (fp16 rows fsync'd + sqlite commit)
  build      the first index type on the backend's collection: flush + wait until every row
             is indexed, then load (segments sealed during the adds are indexed meanwhile);
             each further type in a fresh collection filled by raw `insert` of all n rows
             (the 2.3.5 wheel's server deletes a collection's vector binlogs once its first
             index is built, so re-indexing the same collection cannot work there); the
             indexed-row count, server memory and load are sampled every `--progress-s`
             seconds (`progress` in the JSON) so an unfinished build can be extrapolated;
             FAISS: background IVF-PQ training
  search     single-query p50/p99 and batched QPS (batches of `--batch-queries`), recall@10;
             Milvus backend and raw `client.search` on the same collection with the same
             request (ef / nprobe, candidates, output fields; IVF_PQ/IVF_SQ8 candidates
             re-scored exactly on both sides, plus raw pymilvus's plain top-10 for reference),
             for each level in --consistency; FAISS backend with its defaults

With `--milvus-uri` and `--resume` an existing bench collection holding n rows is kept (its
adds are not redone), so a run cut short can be taken up again on the same server. On the
2.3.5 wheel's server this fails for an IVF_SQ8/IVF_PQ collection that was already indexed and
loaded once: reloading it needs the vector binlogs that its first build deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import loadavg, log, machine_info, ratio, summarize_s
from workbench.bench.synthetic import (
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


def _available_mib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class ServerMemory:
    """Resident memory of the Milvus server process (MiB), when its pid is known."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: dict[str, dict[str, Any]] = {}

    def now(self) -> dict[str, float]:
        fields: dict[str, float] = {}
        if self.pid is not None:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        fields[key] = round(int(value.split()[0]) / 1024, 1)
        return {"rss_mib": fields.get("VmRSS", 0.0), "peak_rss_mib": fields.get("VmHWM", 0.0)}

    def record(self, phase: str) -> None:
        self.samples[phase] = {
            **self.now(),
            "bench_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "available_mib": _available_mib(),
            "loadavg": loadavg(),
        }
        log(f"memory after {phase}: {self.samples[phase]}")


class Progress:
    """Every `every_s` seconds, in a thread: the collection's indexed rows, the server's
    memory, the machine's free memory and load. The samples show an index build's rate (to
    extrapolate one that does not finish) and what memory a phase needed."""

    def __init__(self, uri: str, memory: ServerMemory, every_s: float) -> None:
        self.uri = uri
        self.memory = memory
        self.every_s = every_s
        self.samples: list[dict[str, Any]] = []
        self.collection: str | None = None
        self.phase = "start"
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, timeout=30)
        while not self._stop.wait(self.every_s):
            sample: dict[str, Any] = {
                "t_s": round(time.perf_counter() - self._t0, 1),
                "phase": self.phase,
                "loadavg": loadavg(),
                "available_mib": _available_mib(),
                "server_rss_mib": self.memory.now()["rss_mib"],
            }
            name = self.collection
            with contextlib.suppress(Exception):
                if name and client.has_collection(name):
                    names = client.list_indexes(name)
                    if names:
                        info = client.describe_index(name, names[0])
                        for key in ("indexed_rows", "total_rows", "pending_index_rows"):
                            sample[key] = int(info.get(key, 0) or 0)
            self.samples.append(sample)
            log(f"progress: {sample}")
        with contextlib.suppress(Exception):
            client.close()


@contextlib.contextmanager
def _milvus(
    uri: str | None, workdir: Path, time_tick_ms: int | None, pid: int | None
) -> Iterator[tuple[str, ServerMemory]]:
    if uri:
        yield uri, ServerMemory(pid)
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


def _interleaved_latency(
    sides: dict[str, Any], queries: np.ndarray, single: int
) -> dict[str, list[float]]:
    """Single-query latencies (s) per side, the sides taking turns on each query and
    rotating which goes first, so load changes hit every side alike."""
    names = list(sides)
    lat: dict[str, list[float]] = {name: [] for name in names}
    for i, q in enumerate(queries[:single]):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            sides[name](q)
            lat[name].append(time.perf_counter() - t)
    return lat


def _interleaved_batches(
    sides: dict[str, Any], queries: np.ndarray, batch: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Batched QPS and found positions per side: every batch goes to each side in turn."""
    names = list(sides)
    spent = dict.fromkeys(names, 0.0)
    found: dict[str, list[list[str]]] = {name: [] for name in names}
    for b, start in enumerate(range(0, queries.shape[0], batch)):
        qs = queries[start : start + batch]
        for j in range(len(names)):
            name = names[(b + j) % len(names)]
            t = time.perf_counter()
            found[name] += sides[name](qs)
            spent[name] += time.perf_counter() - t
    return {
        name: (round(queries.shape[0] / spent[name], 1), _positions(found[name])) for name in names
    }


def _compare_search(
    one: dict[str, Any], many: dict[str, Any], queries: np.ndarray, single: int, batch: int
) -> dict[str, dict[str, Any]]:
    """one[name](q [D]) -> ids; many[name](q [B, D]) -> list of ids lists; measured in turns."""
    for name in one:  # warm-up
        one[name](queries[0])
        many[name](queries[:batch])
    lat = _interleaved_latency(one, queries, single)
    batched = _interleaved_batches(many, queries, batch)
    return {
        name: {
            "single": summarize_s(lat[name]),
            "batch_qps": batched[name][0],
            "found": batched[name][1],
        }
        for name in one
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
    out: dict[str, Any] = {
        "index_build_s": round(build_s, 1),
        "index_built": built,
        "loadavg_after_build": loadavg(),
    }
    if not built:
        return out
    t = time.perf_counter()
    client.release_collection(name)
    client.load_collection(name, timeout=timeout)
    out["load_s"] = round(time.perf_counter() - t, 1)
    return out


def _raw_rows(db16: np.ndarray, start: int, stop: int) -> list[dict[str, Any]]:
    """Rows of the backend's schema for raw pymilvus, as a client would build them."""
    return [
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


def _add_rows(store: Any, db16: np.ndarray, batch: int, client: Any, raw_n: int) -> dict[str, Any]:
    """Every row through MilvusStore.add in calls of `batch` (one metadata object each); for
    the first `raw_n` rows each batch also goes to raw `insert` and raw `upsert` into twin
    collections of the same schema, the three taking turns."""
    n, dim = db16.shape
    twins = {
        "insert": "bench_raw_insert",
        "upsert": "bench_raw_upsert",
        "upsert_visible": "bench_raw_upsert_visible",
    }
    for name in twins.values():
        if client.has_collection(name):
            client.drop_collection(name)
        # The backend's index on each twin too, so the twins are loaded as its collection is
        # (the Strong read needs that) and writes cost the same.
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name="vector",
            index_type=store.settings.index_type,
            metric_type="IP",
            params=store.build_params(),
        )
        client.create_collection(
            name,
            schema=_raw_schema(dim),
            index_params=index_params,
            consistency_level="Strong",
        )

    def backend(start: int, stop: int) -> None:
        x = db16[start:stop].astype(np.float32)
        meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
        store.add(_ids(start, stop), x, meta)

    def raw(op: str) -> Any:
        return lambda start, stop: getattr(client, op)(twins[op], _raw_rows(db16, start, stop))

    def raw_visible(start: int, stop: int) -> None:
        # The backend's guarantee by hand: upsert, then one Strong read, which returns once
        # the query nodes have consumed the write.
        client.upsert(twins["upsert_visible"], _raw_rows(db16, start, stop))
        client.query(
            twins["upsert_visible"],
            filter='id == ""',
            output_fields=["id"],
            limit=1,
            consistency_level="Strong",
        )

    sides = {
        "backend": backend,
        "insert": raw("insert"),
        "upsert": raw("upsert"),
        "upsert_visible": raw_visible,
    }
    lat: dict[str, list[float]] = {name: [] for name in sides}
    t_add = time.perf_counter()
    for b, start in enumerate(range(0, n, batch)):
        stop = min(n, start + batch)
        names = list(sides) if start < raw_n else ["backend"]
        for j in range(len(names)):
            name = names[(b + j) % len(names)]
            t = time.perf_counter()
            sides[name](start, stop)
            lat[name].append(time.perf_counter() - t)
        if stop % 50_000 < batch:
            done = time.perf_counter() - t_add
            log(f"adds: {stop} of {n} in {done:.0f}s, load {loadavg()}")
    add_s = time.perf_counter() - t_add
    for name in twins.values():
        client.drop_collection(name)
    paired = min(raw_n, n)
    pair_batches = -(-paired // batch)
    rates = {name: paired / sum(lat[name][:pair_batches]) for name in sides}
    log(f"milvus backend: {n} adds in {add_s:.1f}s (first {paired}: {rates})")
    return {
        "batch": batch,
        "backend_all_rows": {
            "rows": n,
            "vectors_per_s": round(n / sum(lat["backend"]), 1),
            "wall_s_incl_raw_twins": round(add_s, 1),
            "batch_latency": summarize_s(lat["backend"]),
        },
        "interleaved_first_rows": {
            "rows": paired,
            **{
                f"{name}_vectors_per_s": round(rate, 1)
                for name, rate in zip(
                    ["backend", "raw_insert", "raw_upsert", "raw_upsert_then_strong_read"],
                    rates.values(),
                    strict=True,
                )
            },
            "backend_over_raw_insert": ratio(rates["backend"], rates["insert"]),
            "backend_over_raw_upsert": ratio(rates["backend"], rates["upsert"]),
            "backend_over_raw_same_guarantee": ratio(rates["backend"], rates["upsert_visible"]),
        },
        "loadavg_after": loadavg(),
    }


def _raw_fill(
    client: Any, name: str, db16: np.ndarray, batch: int, start: int = 0
) -> dict[str, Any]:
    """Rows `start:` by raw `insert` (no visibility wait, no upsert), as a bulk loader would."""
    n = db16.shape[0]
    t_add = time.perf_counter()
    for first in range(start, n, batch):
        stop = min(n, first + batch)
        client.insert(name, _raw_rows(db16, first, stop))
        if stop % 100_000 < batch:
            log(f"raw insert: {stop} of {n} in {time.perf_counter() - t_add:.0f}s")
    add_s = time.perf_counter() - t_add
    return {
        "rows": n - start,
        "batch": batch,
        "vectors_per_s": round((n - start) / add_s, 1),
        "wall_s": round(add_s, 1),
    }


def _row_count(client: Any, name: str) -> int:
    if not client.has_collection(name):
        return 0
    with contextlib.suppress(Exception):
        # After a server restart the collection may be released; counting needs it loaded.
        client.load_collection(name, timeout=1800)
        rows = client.query(
            name, filter='id > ""', output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])
    return 0


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
        uri=uri,
        collection="bench_backend",
        index_type=index_types[0],
        nlist=args.nlist,
        timeout_s=600.0,
    )
    client = MilvusClient(uri=uri, timeout=600)
    out: dict[str, Any] = {}
    with Progress(uri, memory, args.progress_s) as progress:
        resumed = args.resume and _row_count(client, "bench_backend") == n
        if not resumed and client.has_collection("bench_backend"):
            client.drop_collection("bench_backend")
        store = MilvusStore.open(settings, dim, IndexSettings(), model_sha256="bench")
        progress.collection = "bench_backend"
        if resumed:
            log(f"resuming: bench_backend already holds {n} rows; adds not redone")
            out["add"] = {"resumed": True}
        else:
            # Adds: the backend (validation, fp16 rounding, JSON metadata, upsert, wait until
            # visible) beside raw inserts / upserts of the same rows (same schema).
            progress.phase = "adds"
            backend_n = n if args.backend_add_n is None else min(n, args.backend_add_n)
            out["add"] = _add_rows(
                store, db16[:backend_n], args.batch, client, min(backend_n, args.raw_add_n)
            )
            if backend_n < n:
                # The rest as a bulk loader would write it: the add rate above is the
                # backend's, the collection ends up with the same n rows either way.
                progress.phase = "raw inserts (rest)"
                out["add"]["rest_raw_insert"] = _raw_fill(
                    client, "bench_backend", db16, args.batch, start=backend_n
                )
        memory.record("adds")
        store.close()

        previous: str | None = None
        for position, index_type in enumerate(index_types):
            typed = settings.model_copy(update={"index_type": index_type})
            side_out: dict[str, Any] = {}
            if position > 0:
                # A fresh collection with this index type, filled by raw inserts (see the
                # module doc); the previous one is released first to free its memory.
                name = f"bench_{index_type.lower()}"
                typed = typed.model_copy(update={"collection": name})
                if previous is not None:
                    client.release_collection(previous)
                resumed = args.resume and _row_count(client, name) == n
                if not resumed and client.has_collection(name):
                    client.drop_collection(name)
                store = MilvusStore.open(typed, dim, IndexSettings(), model_sha256="bench")
                progress.collection = name
                if not resumed:
                    progress.phase = f"{index_type} raw inserts"
                    side_out["add_raw_insert_all_rows"] = _raw_fill(client, name, db16, args.batch)
                    log(f"{name}: {side_out['add_raw_insert_all_rows']}")
                store.close()
            store = MilvusStore.open(typed, dim, IndexSettings(), model_sha256="bench")
            side_out["collection"] = typed.collection
            side_out["build_params"] = store.build_params()
            progress.phase = f"{index_type} build"
            timeout = args.build_timeout
            if args.stop_build_at:
                timeout = max(60.0, min(timeout, args.stop_build_at - time.time()))
            side_out.update(_build_index(client, store, timeout))
            log(f"milvus {index_type} build: {side_out}")
            memory.record(f"{index_type} build and load")
            store.close()
            if not side_out["index_built"]:
                side_out["progress_at_timeout"] = progress.samples[-1:] or None
                out[index_type] = side_out
                break
            progress.phase = f"{index_type} searches"
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
            previous = typed.collection
        out["progress"] = progress.samples
    if not args.keep_collections:
        for name in client.list_collections():
            if name.startswith("bench_"):
                client.drop_collection(name)
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
    """Backend vs raw pymilvus on the same collection at one consistency level, in turns."""
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
    collection = settings.collection
    store = MilvusStore.open(settings, dim, idx, model_sha256="bench")
    # Raw reads at the level the backend reads at (Strong with strong_wait "write": Bounded).
    level = store.read_consistency
    raw_search = _raw_searcher(client, collection, request, rescore, level)
    one = {
        "backend": lambda q: [h.id for h in store.search(q[None], K)[0]],
        "raw_pymilvus": lambda q: raw_search(q[None])[0],
    }
    many = {
        "backend": lambda qs: [[h.id for h in hits] for hits in store.search(qs, K)],
        "raw_pymilvus": raw_search,
    }
    if rescore:
        # For reference: the quantised index's own top-10, no re-scoring.
        plain_request = {
            "limit": K,
            "output_fields": ["metadata", "has_metadata"],
            "search_params": request["search_params"],
        }
        plain = _raw_searcher(client, collection, plain_request, False, level)
        one["raw_pymilvus_top10_no_rescoring"] = lambda q: plain(q[None])[0]
        many["raw_pymilvus_top10_no_rescoring"] = plain
    load_before = loadavg()
    try:
        sides = _compare_search(one, many, queries, args.single, args.batch_queries)
        overhead = _backend_overhead(store, queries[: args.single])
    finally:
        store.close()
    backend, raw = sides["backend"], sides["raw_pymilvus"]
    result: dict[str, Any] = {
        "read_consistency": level,
        "params": params,
        "candidates": fetch,
        "loadavg": {"before": load_before, "after": loadavg()},
        **{name: {k: v for k, v in side.items() if k != "found"} for name, side in sides.items()},
        "recall_at_10": {name: recall_at_k(side["found"], truth) for name, side in sides.items()},
        "backend_outside_the_milvus_call": overhead,
        "backend_over_raw": {
            "p50_speed": ratio(raw["single"]["p50_ms"], backend["single"]["p50_ms"]),
            "p99_speed": ratio(raw["single"]["p99_ms"], backend["single"]["p99_ms"]),
            "batch_qps": ratio(backend["batch_qps"], raw["batch_qps"]),
        },
    }
    return result


def _backend_overhead(store: Any, queries: np.ndarray) -> dict[str, float]:
    """What MilvusStore.search spends outside its one `client.search` call (validation,
    request, hits, re-scoring), per single query: times the store's client's search."""
    client = store._call(lambda c: c)  # the store's own connected client
    inner = [0.0]
    search = client.search

    def timed(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return search(*a, **kw)
        finally:
            inner[0] += time.perf_counter() - t

    client.search = timed
    try:
        t = time.perf_counter()
        for q in queries:
            store.search(q[None], K)
        total = time.perf_counter() - t
    finally:
        client.search = search
    n = max(1, queries.shape[0])
    return {
        "queries": int(queries.shape[0]),
        "mean_total_ms": round(total / n * 1e3, 3),
        "mean_outside_ms": round((total - inner[0]) / n * 1e3, 3),
    }


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
    side = _compare_search(
        {"faiss": lambda q: [h.id for h in store.search(q[None], K)[0]]},
        {"faiss": lambda qs: [[h.id for h in hits] for hits in store.search(qs, K)]},
        queries,
        args.single,
        args.batch_queries,
    )["faiss"]
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
    parser.add_argument(
        "--backend-add-n",
        type=int,
        default=None,
        help="rows the backend adds (timed); the rest of its collection by raw insert "
        "(default: all n through the backend)",
    )
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
    parser.add_argument(
        "--milvus-pid", type=int, default=None, help="with --milvus-uri: its pid, for memory"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep a bench collection that already holds --n rows (with --milvus-uri)",
    )
    parser.add_argument(
        "--keep-collections", action="store_true", help="do not drop the bench collections"
    )
    parser.add_argument("--progress-s", type=float, default=30.0, help="progress sample period")
    parser.add_argument(
        "--stop-build-at",
        type=float,
        default=None,
        help="unix time after which an index build is no longer waited for (its progress "
        "samples are reported instead)",
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
        with _milvus(args.milvus_uri, work, args.time_tick_ms, args.milvus_pid) as (
            uri,
            memory,
        ):
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
