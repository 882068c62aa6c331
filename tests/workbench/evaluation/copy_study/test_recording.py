"""workbench/evaluation/copy_study/recording.py: the recorded rows as the arrays the fit reads,
and the stores split by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.index.store import Hit
from workbench.evaluation.copy_study.dataset import Query
from workbench.evaluation.copy_study.recording import (
    Row,
    build_evidence,
    save_evidence,
    split_stores,
)


def _hit(item_id: str, score: float) -> Hit:
    return Hit(id=item_id, score=score, metadata=None, row=0)


def _rows() -> list[Row]:
    copy = Query("p1/grey", "p1", "grey", b"", "photo:p1")
    other = Query("dist:x/original", "dist:x", "original", b"", None)
    return [
        Row(
            query=copy,
            config="A",
            positive=True,
            hits=[_hit("photo:p1", 0.9), _hit("dist:y#0", 0.5), _hit("dist:z#3", 0.3)],
            inliers={"photo:p1": 40, "dist:y#0": 3, "dist:z#3": None},
            returned={"plain": ["photo:p1", "dist:y#0"], "superglobal": ["dist:z#3"]},
        ),
        Row(
            query=other,
            config="B",
            positive=False,
            hits=[_hit("photo:p2", 0.6)],
            inliers={"photo:p2": 0},
            returned={"plain": ["photo:p2"], "superglobal": ["photo:p2"]},
        ),
    ]


def test_rows_become_padded_arrays_in_hit_order() -> None:
    ev = build_evidence(_rows())
    np.testing.assert_array_equal(ev.cos, [[0.9, 0.5, 0.3], [0.6, -2.0, -2.0]])
    np.testing.assert_array_equal(ev.inliers, [[40, 3, -1], [0, -1, -1]])
    assert ev.is_source.tolist() == [[True, False, False], [False, False, False]]
    assert ev.returned["plain"].tolist() == [[True, True, False], [True, False, False]]
    assert ev.returned["superglobal"].tolist() == [[False, False, True], [True, False, False]]
    assert ev.positive.tolist() == [True, False]
    assert ev.too_small.tolist() == [False, False]
    assert ev.edit.tolist() == ["grey", "original"]
    assert ev.group.tolist() == ["p1", "dist:x"]


def test_saved_evidence_names_each_row_and_hit(tmp_path: Path) -> None:
    rows = _rows()
    save_evidence(tmp_path / "ev.npz", build_evidence(rows), rows)
    saved = np.load(tmp_path / "ev.npz")
    assert saved["query"].tolist() == ["p1/grey", "dist:x/original"]
    assert saved["config"].tolist() == ["A", "B"]
    assert saved["hit_ids"].tolist() == [["photo:p1", "dist:y#0", "dist:z#3"], ["photo:p2", "", ""]]
    np.testing.assert_array_equal(
        saved["ret_superglobal"], build_evidence(rows).returned["superglobal"]
    )


def test_stores_alternate_by_name() -> None:
    assert split_stores(["a", "b", "c", "d", "e"]) == {"A": {"a", "c", "e"}, "B": {"b", "d"}}
