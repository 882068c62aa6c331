"""Rankings in the revisitop layout ([N, nq], column q best first), numpy only.

`exact_ranks` gives the full rankings the protocol needs (docs/ALGORITHMS.md 5.3: positives missing
from a truncated list count as not retrieved). `rerank_head` splices a re-ranked top-M (e.g.
SuperGlobal's order) in front of the untouched tail. `pad_ranks` turns truncated per-query
lists (an ANN search) into the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Padding of truncated rankings: never a database index, so compute_map ignores it.
MISSING = -1


def exact_ranks(db: np.ndarray, queries: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Full ranking of the database for every query by inner product.

    db [N, D], queries [Q, D] (float32, L2-normalised) -> ranks [N, Q] int64, column q sorted by
    decreasing similarity; ties keep the lower database index first (stable sort). Queries are
    processed `chunk` at a time so that the [chunk, N] score block stays small with +1M images.
    """
    db = np.asarray(db, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    if db.ndim != 2 or queries.ndim != 2 or db.shape[1] != queries.shape[1]:
        raise ValueError(f"expected db [N, D] and queries [Q, D], got {db.shape}, {queries.shape}")
    ranks = np.empty((db.shape[0], queries.shape[0]), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start : start + chunk] @ db.T  # [c, N]
        ranks[:, start : start + chunk] = np.argsort(-scores, axis=1, kind="stable").T
    return ranks


def pad_ranks(lists: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Per-query ranked db indices of varying length -> [length, Q] int64, MISSING-padded."""
    length = max((len(r) for r in lists), default=0) if length is None else length
    ranks = np.full((length, len(lists)), MISSING, dtype=np.int64)
    for q, ranked in enumerate(lists):
        values = np.asarray(ranked, dtype=np.int64)[:length]
        ranks[: values.size, q] = values
    return ranks


def rerank_head(ranks: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Reorder the first M entries of every column by `orders` [Q, M]; the tail stays.

    ranks [N, Q]; orders[q] is a permutation of range(M) (best first) over ranks[:M, q], as
    `superglobal_rerank` returns it. Returns a new [N, Q] array.
    """
    orders = np.asarray(orders, dtype=np.int64)
    if orders.ndim != 2 or orders.shape[0] != ranks.shape[1] or orders.shape[1] > ranks.shape[0]:
        raise ValueError(f"orders {orders.shape} do not fit ranks {ranks.shape}")
    m = orders.shape[1]
    out = ranks.copy()
    # head[:, q] = ranks[:M, q][orders[q]]  ->  [M, Q]
    out[:m] = np.take_along_axis(ranks[:m], orders.T, axis=0)
    return out
