"""Synthetic vectors for the store benchmarks, and their exact ground truth.

Clustered unit vectors stored as the service stores them (fp16), perturbed database rows as
queries, exact inner-product top-k over the fp16 rows, and recall@k against it. Shared by
the FAISS, Milvus, re-ranking, bulk-load and duplicates benchmarks so their figures compare.
"""

from __future__ import annotations

import numpy as np

K = 10


def n_centres_for(n: int) -> int:
    """A few thousand centres at 1M, proportionally fewer below (~250 vectors per centre)."""
    return int(min(4096, max(16, n // 250)))


def clustered_unit_vectors(n: int, d: int, seed: int, chunk: int = 50_000) -> np.ndarray:
    """[n, d] float16 unit vectors: gaussian blobs on the sphere.

    Centres are uniform on the sphere; cluster sizes follow log-normal weights (a few big
    clusters, many small ones); each vector is normalise(centre + sigma * g / sqrt(d)) with
    sigma ~ U(0.5, 1.2) per vector, so cosines to the centre span ~0.64-0.9.
    """
    rng = np.random.default_rng(seed)
    n_c = n_centres_for(n)
    centres = rng.standard_normal((n_c, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, n_c)
    weights /= weights.sum()
    out = np.empty((n, d), dtype=np.float16)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        assign = rng.choice(n_c, size=m, p=weights)
        sigma = rng.uniform(0.5, 1.2, size=(m, 1)).astype(np.float32)
        x = centres[assign] + sigma * rng.standard_normal((m, d), dtype=np.float32) / np.sqrt(d)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def perturbed_queries(db16: np.ndarray, nq: int, seed: int, tau: float = 0.3) -> np.ndarray:
    """[nq, d] float32 unit queries: database rows + gaussian noise of norm ~tau."""
    rng = np.random.default_rng(seed + 1)
    src = rng.choice(db16.shape[0], size=nq, replace=False)
    d = db16.shape[1]
    q = db16[src].astype(np.float32) + tau * rng.standard_normal((nq, d), dtype=np.float32) / (
        np.sqrt(d)
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


def exact_topk(db16: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    """int64 [nq, k] exact inner-product top-k rows over the fp16 rows (as float32)."""
    nq = queries.shape[0]
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    for start in range(0, db16.shape[0], chunk):
        block = db16[start : start + chunk].astype(np.float32)
        s = queries @ block.T  # [nq, m]
        m = s.shape[1]
        kk = min(k, m)
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found_q ∩ truth_q| / k over queries (both [nq, k] rows; -1 ignored)."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist()))
            for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(hits)) / k, 4)
