"""What a descriptor does beyond copies, and what its scores mean (numpy only).

- `nearest_other_rate`: the fraction of images whose nearest *other* image has the same coarse
  category label (semantic neighbours), with the rate a random neighbour would reach.
- `threshold_study`: top-1 scores of queries whose source is indexed (edited copies) against
  queries with nothing indexed; the `score_threshold` that best separates them, and how often
  it is right, chosen on some folds and checked on the held-out one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def nearest_other_rate(
    vectors: np.ndarray, labels: Sequence[str], queries: Sequence[int] | None = None
) -> dict[str, float]:
    """vectors [N,D] unit rows, labels [N] -> {"rate", "chance", "n"}.

    rate = mean over i of [label(argmax_{j != i} <v_i, v_j>) == label(i)], i over `queries`
    (default all N; the neighbours are always all other images);
    chance = the same with a uniformly random other image.
    """
    v = np.asarray(vectors, dtype=np.float64)
    n = v.shape[0]
    if n < 2 or len(labels) != n:
        raise ValueError(f"need >= 2 vectors with one label each, got {n} and {len(labels)}")
    rows = list(range(n)) if queries is None else [int(i) for i in queries]
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(axis=1)
    same = [labels[i] == labels[int(nearest[i])] for i in rows]
    counts = Counter(labels)
    chance = float(np.mean([(counts[labels[i]] - 1) / (n - 1) for i in rows]))
    return {"rate": float(np.mean(same)), "chance": round(chance, 4), "n": float(len(rows))}


@dataclass(frozen=True)
class ThresholdResult:
    threshold: float
    # Fractions on the evaluated queries: copies found at rank 1 with score >= threshold;
    # never-indexed queries rejected (top-1 score < threshold); both together.
    copies_accepted: float
    unindexed_rejected: float
    accuracy: float


def _right(threshold: float, pos: np.ndarray, pos_ok: np.ndarray, neg: np.ndarray) -> tuple[
        float, float, float]:
    accepted = (pos >= threshold) & pos_ok
    rejected = neg < threshold
    total = (accepted.sum() + rejected.sum()) / (len(pos) + len(neg))
    return float(accepted.mean()), float(rejected.mean()), float(total)


def best_threshold(pos: np.ndarray, pos_ok: np.ndarray, neg: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (mean of the two fractions); midpoint of the
    best gap between consecutive candidate scores."""
    candidates = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[candidates[0] - 1e-3], (candidates[:-1] + candidates[1:]) / 2,
                           [candidates[-1] + 1e-3]])
    best, best_score = float(cuts[0]), -1.0
    for t in cuts:
        acc_pos, acc_neg, _ = _right(float(t), pos, pos_ok, neg)
        balanced = (acc_pos + acc_neg) / 2
        if balanced > best_score + 1e-12:
            best, best_score = float(t), balanced
    return best


def threshold_study(
    pos: Sequence[np.ndarray], pos_ok: Sequence[np.ndarray], neg: Sequence[np.ndarray]
) -> dict[str, object]:
    """Per fold f: pos[f] top-1 scores of copies of indexed photos (pos_ok[f]: rank 1 is the
    source), neg[f] top-1 scores of never-indexed queries.

    Returns the threshold fitted on all folds with its in-sample fractions, and the
    cross-validated fractions (threshold fitted without fold f, applied to fold f).
    """
    folds = len(pos)
    if folds < 2 or not (len(pos_ok) == len(neg) == folds):
        raise ValueError("need >= 2 folds of positive and negative scores")
    all_pos, all_ok, all_neg = np.concatenate(pos), np.concatenate(pos_ok), np.concatenate(neg)
    fitted = best_threshold(all_pos, all_ok, all_neg)
    accepted = rejected = 0.0
    n_pos = n_neg = 0
    for f in range(folds):
        rest = [i for i in range(folds) if i != f]
        t = best_threshold(np.concatenate([pos[i] for i in rest]),
                           np.concatenate([pos_ok[i] for i in rest]),
                           np.concatenate([neg[i] for i in rest]))
        a, r, _ = _right(t, pos[f], pos_ok[f], neg[f])
        accepted += a * len(pos[f])
        rejected += r * len(neg[f])
        n_pos += len(pos[f])
        n_neg += len(neg[f])
    in_sample = ThresholdResult(fitted, *_right(fitted, all_pos, all_ok, all_neg))

    def quantiles(x: np.ndarray) -> dict[str, float]:
        return {f"p{q}": round(float(np.percentile(x, q)), 4) for q in (1, 5, 50, 95, 99)}

    return {
        "threshold": round(fitted, 4),
        "in_sample": {k: round(float(v), 4) for k, v in vars(in_sample).items()
                      if k != "threshold"},
        "cross_validated": {
            "copies_accepted": round(accepted / n_pos, 4),
            "unindexed_rejected": round(rejected / n_neg, 4),
            "accuracy": round((accepted + rejected) / (n_pos + n_neg), 4),
        },
        "copies_top1_score": quantiles(all_pos),
        "unindexed_top1_score": quantiles(all_neg),
        "queries": {"copies": len(all_pos), "unindexed": len(all_neg)},
    }
