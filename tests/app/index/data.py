"""Seeded test vectors with realistic structure: gaussian blobs on the unit sphere."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sphere_blobs(
    n: int, dim: int, clusters: int = 40, spread: float = 0.35, seed: int = 0
) -> np.ndarray:
    """float32 [n, dim] unit vectors: `clusters` random centres, gaussian noise of relative
    scale `spread` around each, re-normalised (what image descriptors of a few landmarks
    look like: tight groups, most pairs nearly orthogonal)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, dim)))
    labels = rng.integers(0, clusters, size=n)
    noise = rng.standard_normal((n, dim)) * (spread / np.sqrt(dim))
    return unit(centres[labels] + noise)


def fp16(x: np.ndarray) -> np.ndarray:
    """What the store keeps: float16 rounding, read back as float32."""
    return x.astype(np.float16).astype(np.float32)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference: (scores [Q, k], positions [Q, k]) by inner product."""
    scores = queries @ base.T  # [Q, N]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order
