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

The model's functions are in workbench/bench/capacity/model.py; reading the runs is
workbench/bench/capacity/store_runs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.capacity.model import faiss_node, fit, ingest, predict
from workbench.bench.capacity.store_runs import observed, read_runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample = args.training_sample
    fitted = [observed(r, args.cores, sample) for r in read_runs(args.fit)]
    checked = [observed(r, args.cores, sample) for r in read_runs(args.check)]
    scan = None if args.scan_gb_per_s is None else 1e-9 / args.scan_gb_per_s
    coef = fit(fitted, scan, sample)
    catalog_bpv = float(np.mean([o["catalog_bytes_per_vector"] for o in fitted]))
    out: dict[str, Any] = {
        "coefficients_s": {
            "coarse_per_dim_centroid": coef[0],
            "pq_scan_per_code_byte": coef[1],
            "rescore_per_dim_candidate": coef[2],
        },
        "catalog_bytes_per_vector": round(catalog_bpv, 1),
        "fitted": [predict(o, coef, sample) for o in fitted],
        "checked": [predict(o, coef, sample) for o in checked],
    }
    # The sized nodes search as the first fitted run did.
    nprobe, fetch = fitted[0]["nprobe"], fitted[0]["fetch"]
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
                sample,
            )
            for n in sizes
        ]
        for rows in ("fp16", "int8")
    }
    if args.ingest_cpu_s:
        out["ingest"] = ingest(args.ingest_cpu_s, sizes)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
