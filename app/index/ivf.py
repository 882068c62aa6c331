"""IVF-PQ for the FAISS store: parameter choice from the collection size, and building a
trained index from stored rows (used by background training and by recovery).

Building holds no store lock: the caller passes a private index and swaps it in afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from app.config import FaissStoreSettings
from app.index.live_rows import IndexState
from app.index.vectors import VectorFile

logger = logging.getLogger(__name__)

FLAT_FACTORY = "IDMap,Flat"
# FAISS warns when k-means gets fewer than 39 points per centroid (Clustering.cpp).
MIN_POINTS_PER_CENTROID = 39
# IVF-PQ needs at least 39 x 16 points to train (nbits >= 4); below that we stay flat.
MIN_IVF_ROWS = MIN_POINTS_PER_CENTROID * 16
# Rows added to a private index per FAISS call: bounds the float32 staging memory of a
# build (16384 x 512 x 4 B = 32 MiB).
BUILD_CHUNK = 16384


class BuildStopped(Exception):
    """A background build noticed that the store is closing and gave up."""


def _round_pow2(x: float) -> int:
    """Nearest power of two in log space (565 -> 512, 800 -> 1024)."""
    return 1 << max(0, math.floor(math.log2(max(x, 1.0)) + 0.5))


def _pq_subquantizers(d: int) -> int:
    """d/8 sub-quantizers (8 dims each: 64 for 512-d) when 8 divides d, else the largest
    divisor of d not above d/8 (PQ needs m | d)."""
    if d % 8 == 0:
        return d // 8
    return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)


def choose_ivf_params(n: int, d: int, n_train: int | None = None) -> dict[str, Any]:
    """IVF-PQ parameters for n vectors of dim d, trained on n_train (default n) of them.

    nlist: 4 * sqrt(n) rounded to a power of two (the FAISS wiki's 4..16 sqrt(n) rule, low end
    because exact re-scoring makes up for coarse lists), halved until n_train >= 39 * nlist so
    k-means has FAISS's minimum 39 points per centroid. 1M vectors -> IVF4096.
    m: d/8 sub-quantizers (PQ64 for 512-d). nbits: 8, fewer only when n_train < 39 * 256
    (PQ k-means would be under-trained; only test-sized collections hit this).
    "np" in the factory string disables polysemous training, which cost minutes for no gain.
    """
    if n < 1 or d < 1:
        raise ValueError(f"need n >= 1 and d >= 1, got n={n}, d={d}")
    n_train = n if n_train is None else min(n, n_train)
    nlist = _round_pow2(4.0 * math.sqrt(n))
    while nlist > 1 and n_train < MIN_POINTS_PER_CENTROID * nlist:
        nlist //= 2
    m = _pq_subquantizers(d)
    nbits = 8
    while nbits > 4 and n_train < MIN_POINTS_PER_CENTROID * (1 << nbits):
        nbits -= 1
    return {
        "nlist": nlist,
        "m": m,
        "nbits": nbits,
        "factory": f"IVF{nlist},PQ{m}x{nbits}np",
        "metric": "inner_product",
    }


def ivf_min_vectors(settings: FaissStoreSettings) -> int:
    """Live count at which the store switches from exact search to IVF-PQ.

    settings.ivf_min_vectors when set; else the smallest n at which the un-capped nlist of
    `choose_ivf_params` already meets the 39-per-centroid floor: nlist 512 at n = 19,968.
    """
    if settings.ivf_min_vectors > 0:
        return settings.ivf_min_vectors
    nlist = 1
    while True:
        # n for which 4 sqrt(n) rounds to nlist: [nlist^2 / 32, nlist^2 / 8).
        low, high = math.ceil(nlist * nlist / 32), nlist * nlist / 8
        n = max(low, MIN_POINTS_PER_CENTROID * nlist)
        if n < high:
            return n
        nlist *= 2


def new_flat(dim: int) -> Any:
    """Exact inner-product index whose ids are vector rows."""
    return faiss.index_factory(dim, FLAT_FACTORY, faiss.METRIC_INNER_PRODUCT)


def add_rows(
    index: Any,
    vectors: VectorFile,
    rows: np.ndarray,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Add int64 `rows` of `vectors` to a private index in chunks of BUILD_CHUNK."""
    for start in range(0, rows.size, BUILD_CHUNK):
        if should_stop is not None and should_stop():
            raise BuildStopped
        chunk = rows[start : start + BUILD_CHUNK]
        index.add_with_ids(vectors.gather(chunk), chunk)


def build_ivfpq(
    vectors: VectorFile,
    rows: np.ndarray,
    settings: FaissStoreSettings,
    label: str,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train IVF-PQ on a random sample of `rows` and add all of them; (index, params)."""
    dim = vectors.dim
    n = int(rows.size)
    n_train = min(n, settings.training_sample)
    params = choose_ivf_params(n, dim, n_train=n_train)
    # Seeded by n: the same collection trains the same index (reproducible benchmarks).
    rng = np.random.default_rng(n)
    sample = np.sort(rng.choice(rows, size=n_train, replace=False))
    train_x = vectors.gather(sample)  # [n_train, D] float32
    index = faiss.index_factory(dim, params["factory"], faiss.METRIC_INNER_PRODUCT)
    # Spherical k-means: centroids on the unit sphere, as the data (cosine similarity).
    faiss.extract_index_ivf(index).cp.spherical = True
    # Default for callers that search without parameters; we always pass nprobe per call.
    faiss.extract_index_ivf(index).nprobe = min(settings.nprobe, params["nlist"])
    t0 = time.perf_counter()
    index.train(train_x)
    del train_x
    logger.info(
        "%s: trained %s on %d of %d vectors in %.2fs",
        label,
        params["factory"],
        n_train,
        n,
        time.perf_counter() - t0,
    )
    add_rows(index, vectors, rows, should_stop)
    return index, params


def build_from_rows(
    vectors: VectorFile,
    rows: np.ndarray,
    covered: int,
    settings: FaissStoreSettings,
    ivf_threshold: int,
    label: str,
) -> IndexState:
    """Synchronous build over the live `rows` (all < `covered`): IVF-PQ when there are at
    least max(ivf_threshold, MIN_IVF_ROWS) of them, else flat."""
    if rows.size >= max(ivf_threshold, MIN_IVF_ROWS):
        index, params = build_ivfpq(vectors, rows, settings, label)
        return IndexState(index, "ivfpq", params, covered, int(rows.size), dead=0)
    flat = new_flat(vectors.dim)
    add_rows(flat, vectors, rows)
    return IndexState(flat, "flat", {"factory": FLAT_FACTORY}, covered, 0, dead=0)
