from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app.errors import StoreCorrupt
from app.index.vectors import VectorFile
from tests.app.index.data import fp16, sphere_blobs

DIM = 32


def test_append_gather_roundtrip_is_fp16_exact(tmp_path: Path) -> None:
    x = sphere_blobs(100, DIM, seed=1)
    vf = VectorFile.open(tmp_path / "v.f16", DIM, 0)
    try:
        assert vf.append(x[:60]) == 0
        assert vf.append(x[60:]) == 60
        assert vf.rows == 100
        got = vf.gather([99, 0, 5, 5])
        assert got.dtype == np.float32 and got.shape == (4, DIM)
        np.testing.assert_array_equal(got, fp16(x[[99, 0, 5, 5]]))
        assert vf.gather([]).shape == (0, DIM)
        with pytest.raises(IndexError):
            vf.gather([100])
    finally:
        vf.close()
    # Raw little-endian float16, row r at byte r * D * 2.
    raw = np.fromfile(tmp_path / "v.f16", dtype="<f2").reshape(-1, DIM)
    np.testing.assert_array_equal(raw.astype(np.float32), fp16(x))


def test_gather_sees_rows_appended_after_the_first_map(tmp_path: Path) -> None:
    x = sphere_blobs(30, DIM, seed=2)
    vf = VectorFile.open(tmp_path / "v.f16", DIM, 0)
    try:
        vf.append(x[:10])
        np.testing.assert_array_equal(vf.gather([9]), fp16(x[[9]]))  # maps 10 rows
        vf.append(x[10:])
        np.testing.assert_array_equal(vf.gather([29, 3]), fp16(x[[29, 3]]))  # re-maps
    finally:
        vf.close()


def test_open_truncates_orphan_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "v.f16"
    x = sphere_blobs(20, DIM, seed=3)
    vf = VectorFile.open(path, DIM, 0)
    vf.append(x)
    vf.close()
    with path.open("ab") as handle:  # half a row of garbage: a torn write
        handle.write(b"\x01" * DIM)
    with caplog.at_level(logging.WARNING, logger="app.index.vectors"):
        vf = VectorFile.open(path, DIM, 15)  # the catalog vouches for 15 rows
    try:
        assert "orphans" in caplog.text
        assert vf.rows == 15 and path.stat().st_size == 15 * DIM * 2
        np.testing.assert_array_equal(vf.gather(np.arange(15)), fp16(x[:15]))
        assert vf.append(x[15:]) == 15
    finally:
        vf.close()


def test_file_shorter_than_catalog_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "v.f16"
    vf = VectorFile.open(path, DIM, 0)
    vf.append(sphere_blobs(5, DIM))
    vf.close()
    with pytest.raises(StoreCorrupt, match=r"v\.f16.*references 6 rows"):
        VectorFile.open(path, DIM, 6)
    assert path.stat().st_size == 5 * DIM * 2  # never "repaired" by truncation


def test_truncate_undoes_an_append(tmp_path: Path) -> None:
    x = sphere_blobs(8, DIM, seed=4)
    vf = VectorFile.open(tmp_path / "v.f16", DIM, 0)
    try:
        vf.append(x[:4])
        vf.gather([3])
        vf.append(x[4:])
        vf.gather([7])
        vf.truncate(4)
        assert vf.rows == 4
        with pytest.raises(IndexError):
            vf.gather([4])
        vf.append(x[6:])
        np.testing.assert_array_equal(vf.gather([4, 5]), fp16(x[6:]))
    finally:
        vf.close()


def test_append_rejects_wrong_shape(tmp_path: Path) -> None:
    vf = VectorFile.open(tmp_path / "v.f16", DIM, 0)
    try:
        with pytest.raises(ValueError, match="expected"):
            vf.append(np.zeros((2, DIM + 1), dtype=np.float32))
        assert vf.rows == 0
    finally:
        vf.close()
