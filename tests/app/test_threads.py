"""app/threads.limit_numpy_blas: numpy's BLAS is capped, FAISS's own BLAS is left alone."""

from __future__ import annotations

from collections.abc import Iterator

import faiss  # noqa: F401  (loads FAISS's bundled BLAS next to numpy's)
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from app.threads import limit_numpy_blas


def _blas() -> list[dict]:
    return [i for i in ThreadpoolController().info() if i["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def _restore_blas_threads() -> Iterator[None]:
    controller = ThreadpoolController()
    before = [(lib, lib.num_threads) for lib in controller.lib_controllers]
    yield
    for lib, threads in before:
        lib.set_num_threads(threads)


def test_caps_numpy_blas_and_leaves_faiss_blas() -> None:
    faiss_before = {i["filepath"]: i["num_threads"] for i in _blas() if "faiss" in i["filepath"]}
    changed = limit_numpy_blas(1)
    assert changed, "numpy's BLAS was not found"
    assert all(i["num_threads"] == 1 and "faiss" not in i["filepath"] for i in changed)
    numpy_libs = [i for i in _blas() if "faiss" not in i["filepath"]]
    assert numpy_libs and all(i["num_threads"] == 1 for i in numpy_libs)
    assert {i["filepath"]: i["num_threads"] for i in _blas() if "faiss" in i["filepath"]} == (
        faiss_before)
    a = np.ones((64, 64), dtype=np.float32)
    np.testing.assert_array_equal(a @ a, np.full((64, 64), 64.0, dtype=np.float32))


def test_zero_leaves_everything_alone() -> None:
    before = [(i["filepath"], i["num_threads"]) for i in _blas()]
    assert limit_numpy_blas(0) == []
    assert [(i["filepath"], i["num_threads"]) for i in _blas()] == before
