#!/usr/bin/env python
"""SuperGlobal re-ranking cost per query (app.search.rerank.superglobal_rerank).

    OPENBLAS_NUM_THREADS=1 python -m workbench.bench.rerank --m 400 --queries 300

Candidates are each query's exact top-M from clustered unit vectors (as after exact
re-scoring), so neighbour structure is realistic. The floor printed next to it is the one
product no implementation can skip: the [M, M] candidate similarities (`cands @ cands.T`).
BLAS threads are whatever the environment says (workbench/bench/suite.py runs it with 1 and with the
default); the JSON reports what numpy's BLAS was told.

With --model-dir, also the contention the service sees: the model running continuously on
onnxruntime (the service's OnnxSession and thread settings, one 512x384 image per run) alone,
then with one M=400 re-rank every 10 ms in a second thread; onnxruntime images/s and re-rank
p50 under that load. The service caps numpy's BLAS at rerank.blas_threads (1) for this reason.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.search.rerank import superglobal_rerank
from workbench.bench.common import ratio, summarize_s, usable_cores
from workbench.bench.synthetic import clustered_unit_vectors, perturbed_queries


def contention(model_dir: Path, query: np.ndarray, cands: np.ndarray, seconds: float
               ) -> dict[str, Any]:
    """onnxruntime images/s alone and next to a re-rank every 10 ms; re-rank p50 under load."""
    import threading

    from app.artifacts import load_model_meta
    from app.config import InferenceSettings
    from app.inference.session import OnnxSession

    meta = load_model_meta(model_dir)
    session = OnnxSession(model_dir / meta.onnx_file, meta, InferenceSettings(providers="cpu"),
                          intra_op_threads=usable_cores())
    image = np.random.default_rng(0).standard_normal((1, 3, 512, 384)).astype(np.float32)
    session.run(image)

    def infer_for(span: float) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < span:
            session.run(image)
            n += 1
        return n / (time.perf_counter() - t0)

    alone = infer_for(seconds)
    stop = threading.Event()
    lat: list[float] = []

    def rerank_loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            superglobal_rerank(query, cands)
            lat.append(time.perf_counter() - t)
            stop.wait(0.01)

    worker = threading.Thread(target=rerank_loop)
    worker.start()
    try:
        loaded = infer_for(seconds)
    finally:
        stop.set()
        worker.join()
    return {
        "intra_op_threads": session.intra_op_threads,
        "onnxruntime_images_per_s_alone": round(alone, 3),
        "onnxruntime_images_per_s_with_rerank": round(loaded, 3),
        "ratio_with_over_alone": ratio(loaded, alone),
        "rerank_under_load": summarize_s(lat),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, default=400)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--beta", type=float, default=0.15)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--pool", type=int, default=50_000)
    p.add_argument("--model-dir", type=Path, help="also measure contention with onnxruntime")
    p.add_argument("--contention-seconds", type=float, default=15.0)
    args = p.parse_args(argv)

    pool = clustered_unit_vectors(args.pool, 512, seed=7).astype(np.float32)
    queries = perturbed_queries(pool.astype(np.float16), args.queries, seed=7)
    sims = queries @ pool.T
    top = np.argsort(-sims, axis=1)[:, : args.m]
    cands = [np.ascontiguousarray(pool[t]) for t in top]  # [M, D] each, best first

    for i in range(min(20, args.queries)):  # warm-up
        superglobal_rerank(queries[i], cands[i], k=args.k, beta=args.beta)
    lat, floor = [], []
    for q, c in zip(queries, cands, strict=True):
        t = time.perf_counter()
        superglobal_rerank(q, c, k=args.k, beta=args.beta)
        lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        _ = c @ c.T
        floor.append(time.perf_counter() - t)
    rr, fl = summarize_s(lat), summarize_s(floor)
    out: dict[str, Any] = {
        "m": args.m, "k": args.k, "dim": 512, "queries": args.queries,
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "rerank": rr, "floor_mxm_similarities": fl,
        "ratio_floor_over_rerank_p50": ratio(fl["p50_ms"], rr["p50_ms"]),
    }
    if args.model_dir is not None:
        out["contention"] = contention(args.model_dir, queries[0], cands[0],
                                       args.contention_seconds)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
