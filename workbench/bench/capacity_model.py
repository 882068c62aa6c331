#!/usr/bin/env python
"""Capacity model of the FAISS node, the Milvus cluster and the ingest fleet; prints JSON.

    python -m workbench.bench.capacity_model --fit store_100k.json [--fit ...] \
        --check store_1m.json [--ingest-cpu-s 0.1] [--sizes 1e6,1e8,1e9] [--dim 1280]

Inputs are the JSON lines of workbench/bench/store.py runs. The model (docs/SCALING.md):

Bytes per vector (closed form from the index layout, checked against the measured files):
    IVF-PQ index   m + 8 (PQ code + int64 id in the inverted list)
                   + (nlist x d + 256 x d) x 4 / n (coarse centroids + PQ codebooks)
    re-scoring rows  2 d (fp16) or d (int8)
    catalog        fitted per vector from the measured catalog.sqlite (ids, metadata JSON)
Search time per query on one core (seconds), three terms fitted by least squares:
    t = a x nlist x d      (coarse quantizer: one dot product per centroid)
      + b x nprobe x (n / nlist) x m   (PQ code scan of the probed lists)
      + c x fetch x d      (exact re-scoring of the candidates, fp16 -> fp32)
from batched QPS (per core) of the fitted runs; `--check` runs are predicted, not fitted.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20


# IVF training sample of the sized nodes (--training-sample); the fitted runs are below it.
TRAINING_SAMPLE = {"rows": 200_000}


def nlist_for(n: int, d: int) -> int:
    """The store's nlist (app/index/ivf.py) for n vectors trained on the configured sample."""
    from app.index.ivf import choose_ivf_params

    return int(choose_ivf_params(n, d, n_train=min(n, TRAINING_SAMPLE["rows"]))["nlist"])


def pq_m(d: int) -> int:
    from app.index.ivf import _pq_subquantizers

    return int(_pq_subquantizers(d))


def index_bytes(
    n: int, d: int, m: int | None = None, nlist: int | None = None, nbits: int = 8
) -> float:
    """Closed-form IVF-PQ bytes for n vectors of dim d (codes, ids, centroids, codebooks)."""
    m = pq_m(d) if m is None else m
    nlist = nlist_for(n, d) if nlist is None else nlist
    code = math.ceil(m * nbits / 8)
    return n * (code + 8) + (nlist * d + (1 << nbits) * d) * 4


def query_terms(n: int, d: int, nprobe: int, fetch: int) -> np.ndarray:
    nlist = nlist_for(n, d)
    return np.array([nlist * d, nprobe * (n / nlist) * pq_m(d), fetch * d], dtype=np.float64)


def _runs(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        lines = [ln for ln in p.read_text().splitlines() if ln.strip().startswith("{")]
        out.append(json.loads(lines[-1]))
    return out


def observed(run: dict[str, Any], cores: int) -> dict[str, Any]:
    """Per-run facts the model uses: n, d, measured bytes, seconds per query per core."""
    n, d = int(run["n"]), int(run["dim"])
    m = run["measure"]
    files = run.get("disk_mib", {})
    index_mib = sum(v for k, v in files.items() if k.startswith("index-"))
    params = run.get("index_params", {})
    return {
        "n": n,
        "d": d,
        "m": int(params.get("m", pq_m(d))),
        "nlist": int(params.get("nlist", nlist_for(n, d))),
        "nbits": int(params.get("nbits", 8)),
        "nprobe": int(m["nprobe"]),
        "fetch": int(m["candidates"]),
        "index_file_bytes_per_vector": index_mib * MIB / n,
        "catalog_bytes_per_vector": files.get("catalog.sqlite", 0.0) * MIB / n,
        "index_anon_mib": m["memory"]["index_anon_mib"],
        # CPU seconds per batched query when measured (robust to other load), else batched
        # wall time x the threads it used.
        "core_s_per_query": m["batch"].get("store_cpu_s_per_query")
        or cores / float(m["batch"]["store_qps"]),
        "single_p50_ms": m["single_query"]["store"]["p50_ms"],
        "single_p99_ms": m["single_query"]["store"]["p99_ms"],
        "recall_at_10": m["recall_at_10"]["store"],
    }


def fit(obs: list[dict[str, Any]], scan_s_per_byte: float | None = None) -> np.ndarray:
    """Non-negative least squares of core_s_per_query on the three terms (relative error).

    `scan_s_per_byte` fixes the PQ scan term instead of fitting it: up to ~1M rows it is a
    small share of a query and the fitted runs cannot tell it from the other two terms."""
    from itertools import combinations

    A = np.stack([query_terms(o["n"], o["d"], o["nprobe"], o["fetch"]) for o in obs])
    y = np.array([o["core_s_per_query"] for o in obs])
    free = [0, 1, 2]
    if scan_s_per_byte is not None:
        y = y - A[:, 1] * scan_s_per_byte
        free = [0, 2]
    W = A / y[:, None]  # relative residuals: each run counts alike whatever its scale
    best, best_err = np.zeros(3), math.inf
    # Active-set search over term subsets, keeping non-negative fits.
    for k in range(1, len(free) + 1):
        for cols in combinations(free, k):
            coef, *_ = np.linalg.lstsq(W[:, cols], np.ones(len(y)), rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(3)
            full[list(cols)] = coef
            err = float(np.sum((W @ full - 1.0) ** 2))
            if err < best_err - 1e-12:
                best, best_err = full, err
    if scan_s_per_byte is not None:
        best[1] = scan_s_per_byte
    return best


def faiss_node(
    n: int,
    d: int,
    coef: np.ndarray,
    catalog_bpv: float,
    nprobe: int,
    fetch: int,
    rescore_bytes: int,
    thumb_bytes: int,
) -> dict[str, Any]:
    idx = index_bytes(n, d)
    core_s = float(query_terms(n, d, nprobe, fetch) @ coef)
    return {
        "n": n,
        "nlist": nlist_for(n, d),
        "ram_index_gib": round(idx / 2**30, 2),
        "disk_gib": round((idx + n * (rescore_bytes + catalog_bpv + thumb_bytes)) / 2**30, 1),
        "rescore_rows_gib": round(n * rescore_bytes / 2**30, 1),
        "qps_per_core": round(1.0 / core_s, 1) if core_s > 0 else None,
        "bytes_per_vector_ram": round(idx / n, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--fit", type=Path, action="append", required=True)
    p.add_argument("--check", type=Path, action="append", default=[])
    p.add_argument("--cores", type=int, default=2, help="threads of the batched measurement")
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--sizes", default="1e6,1e8,1e9")
    p.add_argument("--thumb-bytes", type=int, default=12_000, help="JPEG thumbnail per item")
    p.add_argument("--ingest-cpu-s", type=float, help="CPU seconds per image (embed_shard)")
    p.add_argument(
        "--scan-gb-per-s",
        type=float,
        help="fix the PQ scan rate (GB of codes per second per core) instead of fitting it",
    )
    p.add_argument(
        "--training-sample",
        type=int,
        default=200_000,
        help="IVF training sample of the sized nodes (SIMSEARCH_STORE__FAISS__TRAINING_SAMPLE): "
        "it caps nlist at sample / 39",
    )
    args = p.parse_args(argv)
    TRAINING_SAMPLE["rows"] = args.training_sample
    fitted = [observed(r, args.cores) for r in _runs(args.fit)]
    checked = [observed(r, args.cores) for r in _runs(args.check)]
    scan = None if args.scan_gb_per_s is None else 1e-9 / args.scan_gb_per_s
    coef = fit(fitted, scan)
    catalog_bpv = float(np.mean([o["catalog_bytes_per_vector"] for o in fitted]))

    def predict(o: dict[str, Any]) -> dict[str, Any]:
        pred_s = float(query_terms(o["n"], o["d"], o["nprobe"], o["fetch"]) @ coef)
        pred_b = index_bytes(o["n"], o["d"], o["m"], o["nlist"], o["nbits"]) / o["n"]
        return {
            "n": o["n"],
            "d": o["d"],
            "qps_per_core": {
                "predicted": round(1 / pred_s, 1),
                "measured": round(1 / o["core_s_per_query"], 1),
                "ratio": round(o["core_s_per_query"] / pred_s, 3),
            },
            "index_bytes_per_vector": {
                "predicted": round(pred_b, 1),
                "measured": round(o["index_file_bytes_per_vector"], 1),
                "ratio": round(o["index_file_bytes_per_vector"] / pred_b, 3),
            },
        }

    out: dict[str, Any] = {
        "coefficients_s": {
            "coarse_per_dim_centroid": coef[0],
            "pq_scan_per_code_byte": coef[1],
            "rescore_per_dim_candidate": coef[2],
        },
        "catalog_bytes_per_vector": round(catalog_bpv, 1),
        "fitted": [predict(o) for o in fitted],
        "checked": [predict(o) for o in checked],
    }
    nprobe = fitted[0]["nprobe"]
    fetch = fitted[0]["fetch"]
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    out["faiss_node"] = {
        rows: [
            faiss_node(
                n,
                args.dim,
                coef,
                catalog_bpv,
                nprobe,
                fetch,
                2 * args.dim if rows == "fp16" else args.dim,
                args.thumb_bytes,
            )
            for n in sizes
        ]
        for rows in ("fp16", "int8")
    }
    if args.ingest_cpu_s:
        out["ingest"] = {
            "images_per_s_per_core": round(1 / args.ingest_cpu_s, 2),
            "core_days": {str(n): round(n * args.ingest_cpu_s / 86_400, 1) for n in sizes},
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
