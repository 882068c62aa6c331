"""SuperGlobal re-ranking (ICCV 2023) of one query's top-M list, pure numpy.

Reproduces the official MDescAug + RerankwMDA (ShihaoShao-GH/SuperGlobal,
modules/reranking/MDescAug.py and RerankwMDA.py) for a single query (docs/ALGORITHMS.md 3.4):

1. MDescAug: every candidate is replaced by a weighted mean of its K+1 nearest neighbours found
   *inside the top-M list* (itself included, normally as the nearest): the nearest gets weight 1,
   the next K get beta * similarity. The refined vectors are not re-normalised. s1 = query . R.
   R = (W @ G) / wsum is linear in G, so R @ v is computed as (W @ (G @ v)) / wsum and only the
   K+1 rows of R that the expansion needs are formed.
2. RerankwMDA: the query is expanded by the element-wise max over the K+1 best refined vectors
   by s1 (the query itself is not part of it); s2 = expansion . R; final = (s1 + s2) / 2.

Defaults M = 400 (the caller passes that many candidates), K = 9, beta = 0.15 as in the
official code. Everything is computed in float32, like the official CUDA tensors.

Where the official code is silent or non-deterministic, this module chooses:
- Ties: torch.argsort on CUDA is not stable; here every sort is stable and ties go to the
  candidate ranked earlier in the input order (the better initial rank).
- M < K + 1: the official slices `[:, :, :self.K]` and `[:, :self.K]` silently shorten to M, so
  the neighbour count and the expansion size are both clamped to M (k effectively M - 1).
- Weight 1 goes to the most similar entry of each row, which is the candidate itself except for
  (near-)duplicates; with exact duplicates the choice does not change the refined vector.
"""

from __future__ import annotations

import numpy as np


def _top_neighbours(sims: np.ndarray, n_nn: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of sims [M, M]: the n_nn largest entries, best first, ties to the lower index.

    Returns (idx [M, n_nn] int64, vals [M, n_nn] float32), exactly what a full stable descending
    argsort truncated to n_nn gives, in O(M^2): a SIMD partition finds each row's n_nn-th largest
    value, and the entries >= it are the neighbours (found in ascending index order).
    """
    M = sims.shape[0]
    if n_nn >= M:
        idx = np.argsort(-sims, axis=1, kind="stable")
        return idx, np.take_along_axis(sims, idx, axis=1)

    # [M, 1] n_nn-th largest value of each row (np.partition is SIMD; argpartition ~3.5x slower).
    kth = np.partition(sims, M - n_nn, axis=1)[:, M - n_nn : M - n_nn + 1]
    mask = sims >= kth  # [M, M]: at least n_nn True per row, more only with a tie at the cut
    flat = np.flatnonzero(mask)  # row-major positions, ascending column within each row
    if flat.size == M * n_nn:
        # Every row has exactly n_nn (none can have fewer), so the positions split evenly.
        idx = (flat % M).reshape(M, n_nn)
        vals = sims.reshape(-1)[flat].reshape(M, n_nn)
    else:
        # A row with more than n_nn entries >= its threshold has a tie at the cut (e.g.
        # duplicate images); it is redone with the stable full sort so the lower indices win,
        # as documented.
        irregular = np.count_nonzero(mask, axis=1) != n_nn  # [M]
        idx = np.empty((M, n_nn), dtype=np.int64)
        idx[irregular] = np.argsort(-sims[irregular], axis=1, kind="stable")[:, :n_nn]
        mask[irregular] = False
        idx[~irregular] = np.flatnonzero(mask).reshape(-1, n_nn) % M
        vals = np.take_along_axis(sims, idx, axis=1)
    # Best first: descending value, ascending index among equal values (the stable sort of -vals
    # keeps the ascending-index order of regular rows; irregular rows are already sorted).
    # Flat gathers instead of take_along_axis, whose index set-up costs more than the work.
    within = np.argsort(-vals, axis=1, kind="stable")  # [M, n_nn]
    pick = (within + np.arange(0, M * n_nn, n_nn)[:, None]).reshape(-1)
    return idx.reshape(-1)[pick].reshape(M, n_nn), vals.reshape(-1)[pick].reshape(M, n_nn)


def _neighbour_weights(
    cands: np.ndarray, n_nn: int, beta: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MDescAug weights: the refined descriptors are R = (W @ cands) / wsum, W sparse.

    Returns idx [M, n_nn] (neighbours of each candidate, nearest first), weights [M, n_nn]
    (1 for the nearest, beta * similarity for the others) and wsum [M] (row sums of weights).
    """
    # [M, M] pairwise similarities; `a @ a.T` on one buffer lets numpy call BLAS syrk (half the
    # multiply-adds of a general matmul).
    sims = cands @ cands.T
    idx, vals = _top_neighbours(sims, n_nn)  # [M, n_nn] each, nearest (normally self) first
    # Official: values[:, :, 1:] *= beta; values[:, :, 0:1] = 1.
    weights = vals * np.float32(beta)
    weights[:, 0] = 1.0
    return idx, weights, weights.sum(axis=1)


def superglobal_rerank(
    query: np.ndarray,
    candidates: np.ndarray,
    k: int = 9,
    beta: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank one query's top-M candidates with SuperGlobal (MDescAug + RerankwMDA).

    query: [D] float32, L2-normalised.
    candidates: [M, D] float32, L2-normalised, in initial ranking order (best first). M is the
        official "M" (400 by default upstream): pass exactly the list to re-rank.
    k: neighbours besides self (official K = 9, so K + 1 = 10 are used); clamped to M - 1.
    beta: neighbour weight factor of MDescAug (official 0.15). RerankwMDA also multiplies its
        top s1 values by beta, but upstream never uses the result, so it is not reproduced.

    Returns (order [M] int64, scores [M] float32): `order` is a permutation of range(M), best
    first, indexing `candidates`; `scores[j]` is the final (s1 + s2) / 2 of `order[j]`,
    non-increasing.
    """
    q = np.asarray(query, dtype=np.float32)
    cands = np.asarray(candidates, dtype=np.float32)
    if q.ndim != 1 or cands.ndim != 2 or cands.shape[1] != q.shape[0]:
        raise ValueError(f"expected query [D] and candidates [M, D], got {q.shape}, {cands.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    M = cands.shape[0]
    if M == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)

    # Official self.K = K + 1 (self included), used both for the neighbours and the expansion.
    n_nn = min(k + 1, M)
    idx, weights, wsum = _neighbour_weights(cands, n_nn, beta)

    def refined_dot(v: np.ndarray) -> np.ndarray:
        """R @ v [M] as (W @ (cands @ v)) / wsum: the same value as the official x_dba @ v up to
        float rounding, without materialising R [M, D] (an [M, n_nn, D] gather, the costliest
        step after the similarities)."""
        return (weights * (cands @ v)[idx]).sum(axis=1) / wsum

    s1 = refined_dot(q)  # [M], official res_top1000_dba
    ord1 = np.argsort(-s1, kind="stable")  # [M], MDescAug's new order
    # RerankwMDA: element-wise max over the n_nn best refined descriptors (query not included);
    # only these n_nn rows of R are formed.
    top = ord1[:n_nn]
    refined_top = (weights[top, None, :] @ cands[idx[top]])[:, 0, :] / wsum[top, None]
    expansion = refined_top.max(axis=0)  # [D]
    s2 = refined_dot(expansion)[ord1]  # [M], in ord1 order
    final = (s1[ord1] + s2) / np.float32(2.0)  # [M], in ord1 order
    ord2 = np.argsort(-final, kind="stable")
    return ord1[ord2], final[ord2]


def superglobal_rerank_batch(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int = 9,
    beta: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """`superglobal_rerank` for Q queries at once.

    queries: [Q, D]; candidates: [Q, M, D] (each query's own top-M list).
    Returns (orders [Q, M] int64, scores [Q, M] float32), row q as superglobal_rerank would.
    A loop over queries: the per-query work is already a BLAS-sized M x M x D product.
    """
    qs = np.asarray(queries, dtype=np.float32)
    cands = np.asarray(candidates, dtype=np.float32)
    if qs.ndim != 2 or cands.ndim != 3 or cands.shape[0] != qs.shape[0]:
        raise ValueError(
            f"expected queries [Q, D] and candidates [Q, M, D], got {qs.shape}, {cands.shape}"
        )
    n_q, M = cands.shape[:2]
    orders = np.empty((n_q, M), dtype=np.int64)
    scores = np.empty((n_q, M), dtype=np.float32)
    for i in range(n_q):
        orders[i], scores[i] = superglobal_rerank(qs[i], cands[i], k=k, beta=beta)
    return orders, scores
