#!/usr/bin/env python
"""SuperGlobal re-ranking cost per query (app.search.rerank.superglobal_rerank).

    OPENBLAS_NUM_THREADS=1 python scripts/bench_rerank.py --m 400 --queries 300

Candidates are each query's exact top-M from clustered unit vectors (as after exact
re-scoring), so neighbour structure is realistic. The floor printed next to it is the one
product no implementation can skip: the [M, M] candidate similarities (`cands @ cands.T`).
BLAS threads are whatever the environment says (scripts/bench.py runs it with 1 and with the
default); the JSON reports what numpy's BLAS was told.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from app.search.rerank import superglobal_rerank
from scripts.bench_common import ratio, summarize_s
from scripts.bench_store import clustered_unit_vectors, perturbed_queries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, default=400)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--beta", type=float, default=0.15)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--pool", type=int, default=50_000)
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
    print(json.dumps({
        "m": args.m, "k": args.k, "dim": 512, "queries": args.queries,
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "rerank": rr, "floor_mxm_similarities": fl,
        "ratio_floor_over_rerank_p50": ratio(fl["p50_ms"], rr["p50_ms"]),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
