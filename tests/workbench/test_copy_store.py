"""workbench.copy_store: a FAISS data directory copied into another through the command line,
with the JSON summary; a second run has nothing left to copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.config import FaissStoreSettings
from app.index.faiss_store import FaissStore
from tests.app.index.data import sphere_blobs
from workbench import copy_store

DIM = 16
SHA = "9" * 64


def test_copy_between_faiss_data_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default state file goes into the working directory
    vectors = sphere_blobs(30, DIM, seed=2)
    settings = FaissStoreSettings(threads=1)
    with FaissStore.open(tmp_path / "src" / "store", DIM, settings, model_sha256=SHA) as src:
        src.add([f"x{i}" for i in range(30)], vectors, [{"i": i} for i in range(30)])
    argv = [
        "--from-backend", "faiss", "--from-data-dir", str(tmp_path / "src"),
        "--to-backend", "faiss", "--to-data-dir", str(tmp_path / "dst"),
        "--batch", "8", "--no-progress",
    ]  # fmt: skip
    assert copy_store.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["source_live"], report["copied_now"], report["target_count"]) == (30, 30, 30)
    assert len(list(tmp_path.glob("copy-state-faiss_*.json"))) == 1
    assert copy_store.main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["copied_now"], again["skipped_as_done"]) == (0, 30)
    with FaissStore.open(tmp_path / "dst" / "store", DIM, settings, model_sha256=SHA) as dst:
        item = dst.get("x3", with_vector=True)
        assert item is not None and item.metadata == {"i": 3} and item.vector is not None
        np.testing.assert_array_equal(item.vector, vectors[3].astype(np.float16).astype(np.float32))


def test_a_bad_collection_name_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collection"):
        copy_store.main(["--to-backend", "milvus", "--to-collection", "no spaces", "--no-progress"])
