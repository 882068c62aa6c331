"""append_rows: vector rows and catalog rows move together, or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.errors import StoreCorrupt
from app.index.catalog import Catalog
from app.index.durable_rows import append_rows
from app.index.vectors import VectorFile

DIM = 8


def _rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)  # [n, DIM]


def test_rows_then_catalog_and_replaced_pairs(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    vf = VectorFile.open(tmp_path / "v.f16", DIM, cat.next_row)
    first, pairs = append_rows(tmp_path, vf, cat, ["a", "b"], _rows(2, 0), [None, None])
    assert (first, pairs, vf.rows, cat.next_row) == (0, [], 2, 2)
    # Re-adding "b" puts it at row 2 and names its old row 1.
    first, pairs = append_rows(tmp_path, vf, cat, ["b", "c"], _rows(2, 1), ['{"k": 1}', None])
    assert (first, pairs, vf.rows, cat.next_row) == (2, [(1, 2)], 4, 4)


def test_a_failed_catalog_write_truncates_the_vector_rows(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    vf = VectorFile.open(tmp_path / "v.f16", DIM, cat.next_row)
    append_rows(tmp_path, vf, cat, ["a"], _rows(1, 0), [None])
    with pytest.raises(ValueError):
        # Two metadata entries for one id: the catalog refuses inside its transaction.
        append_rows(tmp_path, vf, cat, ["b"], _rows(1, 1), [None, None])
    assert vf.rows == cat.next_row == 1


def test_vector_rows_out_of_step_with_the_catalog_are_refused(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    vf = VectorFile.open(tmp_path / "v.f16", DIM, cat.next_row)
    vf.append(_rows(1, 0))  # a row the catalog never pointed at
    with pytest.raises(StoreCorrupt, match="1 vector rows but catalog expects 0"):
        append_rows(tmp_path, vf, cat, ["a"], _rows(1, 1), [None])
