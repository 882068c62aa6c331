"""workbench/evaluation/near_duplicate_scores.py: figures from descriptors alone, checked on
vectors whose neighbours and scores are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.evaluation.near_duplicate_scores import rows_study, stored_rows, threshold_folds


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _photos() -> tuple[np.ndarray, np.ndarray]:
    """originals [4,4]: two look-alike pairs (0,1) and (2,3); copies [4,2,4]: each photo
    nudged towards an axis of the other pair (0.05 and 0.1)."""
    originals = _unit(
        np.array([[1, 0.2, 0, 0], [0.2, 1, 0, 0], [0, 0, 1, 0.2], [0, 0, 0.2, 1]], np.float64)
    )
    eye = np.eye(4)
    qvec = np.stack(
        [np.stack([originals[i] + s * eye[(i + 2) % 4] for s in (0.05, 0.1)]) for i in range(4)]
    )
    return originals, _unit(qvec)


def test_fp16_rows_are_the_rounded_rows_and_int8_rows_are_close() -> None:
    originals, qvec = _photos()
    fp16 = stored_rows("fp16", originals, originals)
    np.testing.assert_array_equal(fp16, originals.astype(np.float16).astype(np.float32))
    train = np.concatenate([originals, qvec.reshape(-1, 4)])
    int8 = stored_rows("int8", originals, train)
    assert int8.shape == originals.shape and int8.dtype == np.float32
    # 8 bits over each dimension's trained range (at most ~1.0 wide): error <= range / 255.
    assert np.abs(int8 - originals).max() <= 1.0 / 255 + 1e-6
    with pytest.raises(ValueError, match="fp16 and/or int8"):
        stored_rows("int4", originals, train)


def test_rows_study_recall_and_same_category_rate() -> None:
    originals, qvec = _photos()
    names = ["p0", "p1", "p2", "p3"]
    categories = {"p0": "a", "p1": "a", "p2": "b", "p3": "c"}
    for kind, row_bytes in (("fp16", 8), ("int8", 4)):
        out = rows_study(kind, originals, qvec, names, [0, 1, 2], ["t1", "t2"], categories, 0)
        assert out["bytes_per_row"] == row_bytes
        assert out["recall_at_1"] == {"t1": 1.0, "t2": 1.0, "overall": 1.0}
        assert 0 <= out["max_abs_score_error"] < 0.01
        # Nearest other: 0 -> 1 and 1 -> 0 (same category), 2 -> 3 (b vs c): 2 of 3 queried.
        assert out["semantic_nearest_other_rate"] == round(2 / 3, 4)
        assert "score_threshold" not in out


def test_threshold_folds_hold_photos_out_by_index() -> None:
    # Orthogonal photos make the folds' scores plain: a copy's top-1 is its source at cosine
    # 1/sqrt(1 + s^2); a held-out photo or copy scores at most s/sqrt(1 + s^2) on the others.
    originals = np.eye(4, dtype=np.float32)
    eye = np.eye(4)
    qvec = _unit(
        np.stack([np.stack([eye[i] + s * eye[(i + 1) % 4] for s in (0.1, 0.2)]) for i in range(4)])
    )
    out = threshold_folds(originals, qvec, folds=2)
    # Each fold indexes two photos (i % 2 != f): 2 x 2 copies; 2 originals + 4 copies unindexed.
    assert out["queries"] == {"copies": 8, "unindexed": 12}
    assert out["in_sample"]["copies_accepted"] == 1.0
    assert out["in_sample"]["unindexed_rejected"] == 1.0
    assert out["copies_top1_score"]["p1"] == pytest.approx(1 / np.sqrt(1.04), abs=1e-4)
    assert out["unindexed_top1_score"]["p99"] == pytest.approx(0.2 / np.sqrt(1.04), abs=1e-3)
    # The stored rows, when given, are what the copies are scored against.
    halved = threshold_folds(originals, qvec, folds=2, db_rows=0.5 * originals)
    assert halved["copies_top1_score"]["p1"] == pytest.approx(0.5 / np.sqrt(1.04), abs=1e-4)
