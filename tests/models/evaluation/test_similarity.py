"""Semantic nearest-neighbour rate and the score-threshold study on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.similarity import best_threshold, nearest_other_rate, threshold_study


def _unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_nearest_other_rate_by_hand() -> None:
    # a0 and a1 are close; b0's nearest other is a1 (wrong); b1's nearest is b0 (right).
    v = _unit([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.3, 0.0], [0.3, 0.7, 0.2]])
    out = nearest_other_rate(v, ["a", "a", "b", "b"])
    assert out["rate"] == pytest.approx(3 / 4)
    assert out["chance"] == pytest.approx(4 / 12, abs=1e-4)  # 2 * (2*1) / (4*3), rounded
    with pytest.raises(ValueError):
        nearest_other_rate(v[:1], ["a"])


def test_best_threshold_separates_and_counts_wrong_top1() -> None:
    pos = np.array([0.9, 0.8, 0.85])
    ok = np.array([True, True, False])  # the third copy found the wrong photo
    neg = np.array([0.5, 0.6])
    t = best_threshold(pos, ok, neg)
    assert 0.6 < t < 0.8


def test_threshold_study_cross_validates() -> None:
    rng = np.random.default_rng(0)
    pos = [rng.uniform(0.8, 1.0, 20) for _ in range(3)]
    ok = [np.ones(20, dtype=bool) for _ in range(3)]
    neg = [rng.uniform(0.3, 0.7, 10) for _ in range(3)]
    out = threshold_study(pos, ok, neg)
    assert 0.7 <= float(out["threshold"]) <= 0.8  # type: ignore[arg-type]
    assert out["cross_validated"] == {"copies_accepted": 1.0, "unindexed_rejected": 1.0,
                                      "accuracy": 1.0}
    # Overlapping scores: accuracy drops below 1 and is reported, not hidden.
    neg[0][0] = 0.95
    out = threshold_study(pos, ok, neg)
    assert out["cross_validated"]["accuracy"] < 1.0  # type: ignore[index]


def test_nearest_other_rate_on_a_subset_of_queries() -> None:
    v = _unit([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.3, 0.0], [0.3, 0.7, 0.2]])
    out = nearest_other_rate(v, ["a", "a", "b", "b"], queries=[2])  # b0 -> a1: wrong
    assert (out["rate"], out["n"]) == (0.0, 1.0)
    assert out["chance"] == pytest.approx(1 / 3, abs=1e-4)
