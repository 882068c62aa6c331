"""The capacity model of a FAISS node: closed-form bytes and a fitted search time. Pure
functions, figures in and predictions out; reading runs is store_runs.py's job.

Bytes per vector (closed form from the index layout):
    IVF-PQ index   m + 8 (PQ code + int64 id in the inverted list)
                   + (nlist x d + 256 x d) x 4 / n (coarse centroids + PQ codebooks)
    re-scoring rows  2 d (fp16) or d (int8)
Search time per query on one core (seconds), three terms with coefficients fitted by least
squares (`fit`):
    t = a x nlist x d                  (coarse quantizer: one dot product per centroid)
      + b x nprobe x (n / nlist) x m   (PQ code scan of the probed lists)
      + c x fetch x d                  (exact re-scoring of the candidates, fp16 -> fp32)
nlist is the store's own choice (app/index/ivf.py) for n vectors trained on `training_sample`
of them (SIMSEARCH_STORE__FAISS__TRAINING_SAMPLE), which caps it at sample / 39.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

GIB = 2**30
# The store's default IVF training sample (SIMSEARCH_STORE__FAISS__TRAINING_SAMPLE).
TRAINING_SAMPLE = 200_000


def nlist_for(n: int, d: int, training_sample: int = TRAINING_SAMPLE) -> int:
    """The store's nlist (app/index/ivf.py) for n vectors trained on the configured sample."""
    from app.index.ivf import choose_ivf_params

    return int(choose_ivf_params(n, d, n_train=min(n, training_sample))["nlist"])


def pq_m(d: int) -> int:
    """The store's PQ sub-quantizers for dimension d (bytes per code at 8 bits)."""
    from app.index.ivf import _pq_subquantizers

    return int(_pq_subquantizers(d))


def index_bytes(
    n: int,
    d: int,
    m: int | None = None,
    nlist: int | None = None,
    nbits: int = 8,
    training_sample: int = TRAINING_SAMPLE,
) -> float:
    """Closed-form IVF-PQ bytes for n vectors of dim d (codes, ids, centroids, codebooks)."""
    m = pq_m(d) if m is None else m
    nlist = nlist_for(n, d, training_sample) if nlist is None else nlist
    code = math.ceil(m * nbits / 8)
    return n * (code + 8) + (nlist * d + (1 << nbits) * d) * 4


def query_terms(
    n: int, d: int, nprobe: int, fetch: int, training_sample: int = TRAINING_SAMPLE
) -> np.ndarray:
    """[nlist x d, nprobe x (n / nlist) x m, fetch x d]: the three terms of a query's time."""
    nlist = nlist_for(n, d, training_sample)
    return np.array([nlist * d, nprobe * (n / nlist) * pq_m(d), fetch * d], dtype=np.float64)


def fit(
    obs: Sequence[dict[str, Any]],
    scan_s_per_byte: float | None = None,
    training_sample: int = TRAINING_SAMPLE,
) -> np.ndarray:
    """Non-negative least squares of core_s_per_query on the three terms (relative error).

    `obs` are store_runs.observed() facts (n, d, nprobe, fetch, core_s_per_query).
    `scan_s_per_byte` fixes the PQ scan term instead of fitting it: up to ~1M rows it is a
    small share of a query and the fitted runs cannot tell it from the other two terms."""
    A = np.stack(
        [query_terms(o["n"], o["d"], o["nprobe"], o["fetch"], training_sample) for o in obs]
    )
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


def predict(
    o: dict[str, Any], coef: np.ndarray, training_sample: int = TRAINING_SAMPLE
) -> dict[str, Any]:
    """One observed run: QPS per core and index bytes per vector, predicted vs measured."""
    pred_s = float(query_terms(o["n"], o["d"], o["nprobe"], o["fetch"], training_sample) @ coef)
    pred_b = index_bytes(o["n"], o["d"], o["m"], o["nlist"], o["nbits"], training_sample) / o["n"]
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


def faiss_node(
    n: int,
    d: int,
    coef: np.ndarray,
    catalog_bpv: float,
    nprobe: int,
    fetch: int,
    rescore_bytes: int,
    thumb_bytes: int,
    training_sample: int = TRAINING_SAMPLE,
) -> dict[str, Any]:
    """A node holding n vectors: index RAM, disk (index + re-scoring rows + catalog +
    thumbnails), and the predicted QPS per core."""
    idx = index_bytes(n, d, training_sample=training_sample)
    core_s = float(query_terms(n, d, nprobe, fetch, training_sample) @ coef)
    return {
        "n": n,
        "nlist": nlist_for(n, d, training_sample),
        "ram_index_gib": round(idx / GIB, 2),
        "disk_gib": round((idx + n * (rescore_bytes + catalog_bpv + thumb_bytes)) / GIB, 1),
        "rescore_rows_gib": round(n * rescore_bytes / GIB, 1),
        "qps_per_core": round(1.0 / core_s, 1) if core_s > 0 else None,
        "bytes_per_vector_ram": round(idx / n, 1),
    }


def ingest(cpu_s_per_image: float, sizes: Sequence[int]) -> dict[str, Any]:
    """The ingest fleet: images per second per core and core-days to embed each size."""
    return {
        "images_per_s_per_core": round(1 / cpu_s_per_image, 2),
        "core_days": {str(n): round(n * cpu_s_per_image / 86_400, 1) for n in sizes},
    }
