#!/usr/bin/env python
"""Store benchmark: durable adds, search QPS / latency, recall@10, memory, next to raw FAISS.

    python -m workbench.bench.store --n 100000 [--nprobes 8,16,32] [--queries 1000]

Prints one JSON object (last stdout line). Called by workbench/bench/suite.py once per size.

Data: `n` unit vectors of dimension 512 drawn as gaussian blobs on the sphere (a few thousand
centres, cluster sizes and spreads varying), stored as the service stores them (fp16).
Queries are perturbed database vectors (cosine ~0.95 to their source). Ground truth: exact
inner-product top-10 over the fp16 rows, computed with numpy.

Phases (separate processes, so memory figures are not polluted by the data generator):
  build    generate, `FaissStore.add` in batches (durable: fsync + sqlite commit each), train the
           store's own IVF-PQ (`choose_ivf_params`) once over all n rows, close (snapshot).
  measure  re-open the store from its snapshot (RSS before/after = the index's memory), then,
           interleaved in rounds: store single-query and batched search vs raw FAISS on the same
           snapshot file (read with faiss.read_index) with the same factory string, nprobe and
           max(k x candidate_factor, min_candidates) candidates re-scored exactly in numpy from
           the same fp16 rows. Then steady-state durable adds into the IVF-PQ store.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import log, rss, run_json_child, summarize_s
from workbench.bench.synthetic import (
    K,
    clustered_unit_vectors,
    exact_topk,
    n_centres_for,
    perturbed_queries,
    recall_at_k,
)

DIM = 512  # default --dim (bench.py's figures); the default model emits 1280


# ---------------------------------------------------------------------------- build
def _index_settings(n: int) -> Any:
    from app.config import FaissStoreSettings

    # One training over all n rows (what a rebuild / retrain does): the store's own
    # choose_ivf_params(n, 512, n_train=training_sample). No flat-index snapshots during the
    # bulk load (they would serialise up to n x 2 KiB each time; the catalog and vectors.f16
    # are the durable part, snapshots are a cache).
    # No retraining either when the steady-state adds below grow a small collection.
    return FaissStoreSettings(ivf_min_vectors=n, snapshot_every=max(n, 10_000) * 10,
                              retrain_growth=1000.0)


def build(
    n: int, directory: Path, batch: int, seed: int, nq: int, dim: int = DIM, load: str = "add"
) -> dict[str, Any]:
    from app.index.faiss_store import FaissStore

    t0 = time.perf_counter()
    db16 = clustered_unit_vectors(n, dim, seed)
    queries = perturbed_queries(db16, nq, seed)
    gen_s = time.perf_counter() - t0
    log(f"store n={n}: generated data in {gen_s:.1f}s; exact ground truth ...")
    t0 = time.perf_counter()
    truth = exact_topk(db16, queries, K)
    gt_s = time.perf_counter() - t0
    np.save(directory / "queries.npy", queries)
    np.save(directory / "truth.npy", truth)

    store_dir = directory / "store"
    add_lat: list[float] = []
    if load == "bulk":
        # app/index/bulk.py: the same durable writes, no live flat index (at 1M x 1280 that
        # index alone is 4.9 GiB of float32); the open afterwards trains IVF-PQ over all rows.
        from app.index.bulk import BulkWriter

        t_add = time.perf_counter()
        with BulkWriter.open(store_dir, dim) as writer:
            for start in range(0, n, batch):
                stop = min(n, start + batch)
                ids = [f"v{i:08d}" for i in range(start, stop)]
                meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
                t = time.perf_counter()
                writer.append(ids, db16[start:stop].astype(np.float32), meta)
                add_lat.append(time.perf_counter() - t)
        add_s = time.perf_counter() - t_add
        del db16
        log(f"store n={n}: {n} bulk durable writes in {add_s:.1f}s; open trains IVF-PQ ...")
        t_train = time.perf_counter()
        store = FaissStore.open(store_dir, dim, _index_settings(n))
        store.wait_for_training()
        train_s = time.perf_counter() - t_train
    else:
        store = FaissStore.open(store_dir, dim, _index_settings(n))
        t_add = time.perf_counter()
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            ids = [f"v{i:08d}" for i in range(start, stop)]
            meta = [{"path": f"images/{i:08d}.jpg"} for i in range(start, stop)]
            x = db16[start:stop].astype(np.float32)
            t = time.perf_counter()
            store.add(ids, x, meta)
            add_lat.append(time.perf_counter() - t)
        add_s = time.perf_counter() - t_add
        log(f"store n={n}: {n} durable adds in {add_s:.1f}s; training IVF-PQ ...")
        t_train = time.perf_counter()
        store.wait_for_training()
        train_s = time.perf_counter() - t_train
    stats = store.stats()
    t_close = time.perf_counter()
    store.close()  # final snapshot
    close_s = time.perf_counter() - t_close
    return {
        "n": n,
        "dim": dim,
        "load": load,
        "peak_rss_mib": rss().get("peak_mib"),
        "centres": n_centres_for(n),
        "queries": nq,
        "generate_s": round(gen_s, 2),
        "ground_truth_s": round(gt_s, 2),
        "add": {
            "batch": batch,
            "phase": (
                "bulk writer (no index; durable: vectors fsync + sqlite commit)"
                if load == "bulk"
                else "before training (flat index; durable: vectors fsync + sqlite commit)"
            ),
            "vectors_per_s": round(n / add_s, 1),
            "batch_latency": summarize_s(add_lat),
        },
        "train_and_add_all_s": round(train_s, 2),
        "snapshot_s": round(close_s, 2),
        "index_type": stats.index_type,
        "index_params": {
            k: v for k, v in stats.index_params.items() if k in ("factory", "nlist", "m", "nbits",
                                                                  "nprobe", "ntrained_on")
        },
    }


# ---------------------------------------------------------------------------- measure
def _raw_search(
    index: Any, x16: np.ndarray, q: np.ndarray, k: int, fetch: int, nprobe: int
) -> np.ndarray:
    """Raw FAISS + numpy exact re-scoring: [Q, D] -> rows [Q, k] (what the store computes)."""
    import faiss

    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    _, rows = index.search(q, fetch, params=params)  # [Q, fetch], -1 padded
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    exact = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, q.shape[0], 256):  # bounded [256, fetch, D] float32 blocks
        cand = x16[safe[start : start + 256]].astype(np.float32)
        exact[start : start + 256] = np.einsum("qfd,qd->qf", cand, q[start : start + 256])
    exact[~valid] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rows, order, 1)


def _store_rows(hits: list[list[Any]], k: int) -> np.ndarray:
    out = np.full((len(hits), k), -1, dtype=np.int64)
    for i, hs in enumerate(hits):
        rows = [h.row for h in hs[:k]]
        out[i, : len(rows)] = rows
    return out


def measure(
    directory: Path,
    n: int,
    nprobes: list[int],
    rounds: int,
    single: int,
    cores: int,
    dim: int = DIM,
) -> dict[str, Any]:
    import faiss

    from app.index.faiss_store import MANIFEST_FILE, VECTORS_FILE, FaissStore

    queries = np.load(directory / "queries.npy")
    truth = np.load(directory / "truth.npy")
    store_dir = directory / "store"
    base = rss()
    t0 = time.perf_counter()
    store = FaissStore.open(store_dir, dim, _index_settings(n))
    open_s = time.perf_counter() - t0
    after_open = rss()
    settings = store.settings
    default_nprobe = settings.nprobe
    fetch = max(K * settings.candidate_factor, settings.min_candidates)
    nq = queries.shape[0]
    qs = queries[: min(single, nq)]

    # Raw FAISS objects, loaded after the store's own memory has been measured.
    raw_index: Any = None
    x16 = np.empty((0, dim), dtype=np.float16)

    def store_single(nprobe: int, factor: int | None = None) -> tuple[list[float], np.ndarray]:
        lat, found = [], []
        for q in qs:
            t = time.perf_counter()
            hits = store.search(q[None, :], K, nprobe=nprobe, candidate_factor=factor)
            lat.append(time.perf_counter() - t)
            found.append(_store_rows(hits, K)[0])
        return lat, np.stack(found)

    def raw_single(nprobe: int) -> tuple[list[float], np.ndarray]:
        faiss.omp_set_num_threads(1)  # one query: a parallel region only costs (measured)
        lat, found = [], []
        for q in qs:
            t = time.perf_counter()
            rows = _raw_search(raw_index, x16, q[None, :], K, fetch, nprobe)
            lat.append(time.perf_counter() - t)
            found.append(rows[0])
        return lat, np.stack(found)

    # CPU seconds of this process per batched query (all threads): a cost per core that other
    # jobs on a shared machine inflate far less than wall-clock QPS (the capacity model's input).
    batch_cpu_s: list[float] = []

    def store_batch(nprobe: int, factor: int | None = None) -> tuple[float, np.ndarray]:
        t, c = time.perf_counter(), time.process_time()
        hits = store.search(queries, K, nprobe=nprobe, candidate_factor=factor)
        wall = time.perf_counter() - t
        if nprobe == default_nprobe and factor is None:
            batch_cpu_s.append((time.process_time() - c) / len(queries))
        return wall, _store_rows(hits, K)

    def raw_batch(nprobe: int) -> tuple[float, np.ndarray]:
        faiss.omp_set_num_threads(cores)
        t = time.perf_counter()
        rows = _raw_search(raw_index, x16, queries, K, fetch, nprobe)
        return time.perf_counter() - t, rows

    # Warm-up: first calls page in the codes and the fp16 rows the queries touch.
    store_batch(default_nprobe)
    store_single(default_nprobe)
    after_store_search = rss()  # + the pages of vectors.f16 and catalog.sqlite touched

    # Raw FAISS: the same snapshot file, a separate object; the same fp16 rows, in RAM.
    manifest = json.loads((store_dir / MANIFEST_FILE).read_text())
    raw_index = faiss.read_index(str(store_dir / manifest["index_file"]))
    x16 = np.fromfile(store_dir / VECTORS_FILE, dtype="<f2").reshape(-1, dim)
    raw_batch(default_nprobe)
    raw_single(default_nprobe)
    faiss.omp_set_num_threads(cores)  # what the calling thread had before (store.open set it)

    per_round: list[dict[str, float]] = []
    s_lat_all: list[float] = []
    r_lat_all: list[float] = []
    recall: dict[str, float] = {}
    for r in range(rounds):
        # ABBA order across rounds, so a load change on the shared machine hits both sides.
        if r % 2 == 0:
            s_lat, s_found1 = store_single(default_nprobe)
            r_lat, r_found1 = raw_single(default_nprobe)
            faiss.omp_set_num_threads(cores)
            s_bt, s_found = store_batch(default_nprobe)
            r_bt, r_found = raw_batch(default_nprobe)
        else:
            r_bt, r_found = raw_batch(default_nprobe)
            s_bt, s_found = store_batch(default_nprobe)
            r_lat, r_found1 = raw_single(default_nprobe)
            faiss.omp_set_num_threads(cores)
            s_lat, s_found1 = store_single(default_nprobe)
        s_lat_all += s_lat
        r_lat_all += r_lat
        per_round.append({
            "store_single_p50_ms": float(np.median(s_lat)) * 1e3,
            "raw_single_p50_ms": float(np.median(r_lat)) * 1e3,
            "store_batch_qps": nq / s_bt,
            "raw_batch_qps": nq / r_bt,
        })
        recall = {
            "store": recall_at_k(s_found, truth),
            "raw": recall_at_k(r_found, truth),
            "store_single": recall_at_k(s_found1, truth[: len(qs)]),
            "raw_single": recall_at_k(r_found1, truth[: len(qs)]),
        }
    after_search = rss()

    def med(key: str) -> float:
        return round(float(np.median([r[key] for r in per_round])), 3)

    store_single_qps = [1e3 / r["store_single_p50_ms"] for r in per_round]
    raw_single_qps = [1e3 / r["raw_single_p50_ms"] for r in per_round]
    result: dict[str, Any] = {
        "open_s": round(open_s, 3),
        "nprobe": default_nprobe,
        "candidates": fetch,
        "rounds": rounds,
        "recall_at_10": recall,
        "single_query": {
            "store": summarize_s(s_lat_all),
            "raw": summarize_s(r_lat_all),
            "p50_ratio_raw_over_store": round(
                float(np.median([r["raw_single_p50_ms"] / r["store_single_p50_ms"]
                                 for r in per_round])), 3),
            "store_qps_at_p50": round(float(np.median(store_single_qps)), 1),
            "raw_qps_at_p50": round(float(np.median(raw_single_qps)), 1),
        },
        "batch": {
            "queries_per_call": nq,
            "store_qps": round(med("store_batch_qps"), 1),
            "raw_qps": round(med("raw_batch_qps"), 1),
            "store_cpu_s_per_query": round(float(np.median(batch_cpu_s)), 7),
            "ratio_store_over_raw": round(float(np.median(
                [r["store_batch_qps"] / r["raw_batch_qps"] for r in per_round])), 3),
        },
        "per_round": [{k: round(v, 3) for k, v in r.items()} for r in per_round],
    }

    # nprobe sweep (store only): recall and latency trade-off.
    sweep = []
    for nprobe in nprobes:
        lat, _ = store_single(nprobe)
        bt, found = store_batch(nprobe)
        sweep.append({
            "nprobe": nprobe,
            "recall_at_10": recall_at_k(found, truth),
            "single": summarize_s(lat),
            "batch_qps": round(nq / bt, 1),
        })
    result["nprobe_sweep"] = sweep

    # Candidates re-scored (k x candidate_factor, at least min_candidates): what bounds recall
    # once nprobe is enough.
    factors = []
    for factor in (4, 8, 16, 32):
        lat, _ = store_single(default_nprobe, factor)
        bt, found = store_batch(default_nprobe, factor)
        factors.append({
            "candidate_factor": factor,
            "candidates": max(K * factor, settings.min_candidates),
            "recall_at_10": recall_at_k(found, truth),
            "single": summarize_s(lat),
            "batch_qps": round(nq / bt, 1),
        })
    result["candidate_factor_sweep"] = factors

    # Memory: what the open store holds (index in RAM; vectors.f16 is mapped, paged in by use).
    result["memory"] = {
        "before_open": base,
        "after_open": after_open,
        "after_store_search": after_store_search,
        "after_raw_too": after_search,
        "index_anon_mib": round(after_open["anon_mib"] - base["anon_mib"], 1),
        "anon_mib_per_million": round((after_open["anon_mib"] - base["anon_mib"]) * 1e6 / n, 1),
        "vectors_f16_mib_per_million": round(dim * 2 * 1e6 / 2**20, 1),
    }
    raw_index, x16 = None, np.empty((0, dim), dtype=np.float16)  # free before the adds

    # Steady-state durable adds into the trained IVF-PQ store (PQ encoding + fsync + commit).
    rng = np.random.default_rng(12345)
    extra = rng.standard_normal((10 * 1000 + 50, dim)).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    lat_batch, lat_one = [], []
    for b in range(10):
        ids = [f"extra{b}-{i}" for i in range(1000)]
        t = time.perf_counter()
        store.add(ids, extra[b * 1000 : (b + 1) * 1000], [{"path": i} for i in ids])
        lat_batch.append(time.perf_counter() - t)
    for i in range(50):
        t = time.perf_counter()
        store.add([f"one{i}"], extra[10_000 + i : 10_001 + i], [{"path": f"one{i}"}])
        lat_one.append(time.perf_counter() - t)
    result["add_ivfpq"] = {
        "batch_1000_vectors_per_s": round(1000 * len(lat_batch) / sum(lat_batch), 1),
        "batch_1000_latency": summarize_s(lat_batch),
        "single_add_latency": summarize_s(lat_one),
    }
    store.close()
    return result


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dim", type=int, default=DIM, help="vector dimension (default model: 1280)")
    p.add_argument("--phase", choices=("all", "build", "measure", "variants"), default="all")
    p.add_argument("--workdir", type=Path, help="default: a temp dir (removed afterwards)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--single", type=int, default=500, help="single-query searches per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=10_000, help="vectors per durable add")
    p.add_argument(
        "--load",
        choices=("add", "bulk"),
        default="add",
        help="add: FaissStore.add (live flat index until trained); bulk: app/index/bulk.py "
        "writes, then one open trains IVF-PQ (no float32 flat index in RAM)",
    )
    p.add_argument(
        "--variants",
        default="",
        help="comma-separated index variants to compare after measuring (workbench/"
        "bench/store_variants.py), e.g. base,pca512,pca256,opq256,sq8rescore",
    )
    p.add_argument("--nprobes", default="8,16,32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="FAISS threads (0 = usable cores)")
    p.add_argument("--skip-measure", action="store_true", help="build (and variants) only")
    args = p.parse_args(argv)
    from workbench.bench.common import usable_cores

    cores = args.threads or usable_cores()
    nprobes = [int(v) for v in args.nprobes.split(",") if v.strip()]
    if args.phase == "measure":
        assert args.workdir is not None
        out = measure(args.workdir, args.n, nprobes, args.rounds, args.single, cores, args.dim)
        print(json.dumps(out))
        return 0
    if args.phase == "variants":
        assert args.workdir is not None
        from workbench.bench.store_variants import compare_variants

        out = compare_variants(args.workdir, args.n, args.dim, args.variants.split(","), cores)
        print(json.dumps(out))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.workdir) as tmp:
        work = Path(tmp)
        out = build(args.n, work, args.batch, args.seed, args.queries, args.dim, args.load)
        if args.phase == "build":
            print(json.dumps(out))
            return 0
        out["disk_mib"] = {
            f.name: round(f.stat().st_size / 2**20, 1)
            for f in sorted((work / "store").iterdir()) if f.is_file()
        }
        out["disk_bytes_per_vector"] = round(
            sum(f.stat().st_size for f in (work / "store").iterdir() if f.is_file()) / args.n, 1
        )
        if not args.skip_measure:
            log(f"store n={args.n}: built; measuring in a fresh process ...")
            out["measure"] = run_json_child(
                [
                    "-m", "workbench.bench.store", "--phase", "measure", "--n", str(args.n),
                    "--dim", str(args.dim), "--workdir", str(work), "--nprobes", args.nprobes,
                    "--rounds", str(args.rounds), "--single", str(args.single),
                    "--threads", str(cores),
                ],
                env={"OMP_NUM_THREADS": str(cores)},
            )
        if args.variants:
            log(f"store n={args.n}: comparing index variants {args.variants} ...")
            out["variants"] = run_json_child(
                [
                    "-m", "workbench.bench.store", "--phase", "variants", "--n", str(args.n),
                    "--dim", str(args.dim), "--workdir", str(work), "--variants", args.variants,
                    "--threads", str(cores),
                ],
                env={"OMP_NUM_THREADS": str(cores)},
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
