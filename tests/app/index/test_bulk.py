"""app/index/bulk.py: durable appends to a closed FAISS store, then one index build at open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import FaissStoreSettings
from app.errors import ArtifactMismatch
from app.index.bulk import BulkWriter
from app.index.faiss_store import MANIFEST_FILE, FaissStore, StoreLocked

DIM = 32


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def settings(**kw: object) -> FaissStoreSettings:
    return FaissStoreSettings(threads=1, training_sample=1000, **kw)  # type: ignore[arg-type]


def test_bulk_rows_open_as_ivfpq_with_exact_scores_and_replacements(tmp_path: Path) -> None:
    x = unit_rows(1200, 0)
    ids = [f"v{i}" for i in range(1200)]
    with BulkWriter.open(tmp_path, DIM, "sha-a") as writer:
        for lo in range(0, 1200, 500):
            writer.append(
                ids[lo : lo + 500],
                x[lo : lo + 500],
                [{"i": i} for i in range(lo, min(lo + 500, 1200))],
                created_at=[float(i) for i in range(lo, min(lo + 500, 1200))],
            )
        # Re-adding an id replaces it, as FaissStore.add does.
        writer.append(["v0"], x[1:2], [{"i": "again"}], [b"\xff\xd8jpeg"])
        assert (writer.appended, writer.replaced) == (1201, 1)
    store = FaissStore.open(tmp_path, DIM, settings(ivf_min_vectors=1000), model_sha256="sha-a")
    try:
        stats = store.stats()
        assert stats.index_type == "ivfpq" and stats.ntotal == 1200 and stats.tombstones == 1
        item = store.get("v0", with_vector=True)
        assert item is not None and item.metadata == {"i": "again"}
        assert store.thumbnail("v0") == b"\xff\xd8jpeg"
        np.testing.assert_allclose(item.vector, x[1], atol=1e-3)
        v5 = store.get("v5")
        assert v5 is not None and v5.created_at == 5.0
        hits = store.search(x[10:11], 3)[0]
        assert hits[0].id == "v10"
        assert hits[0].score == pytest.approx(float(x[10] @ x[10].astype(np.float16)), abs=1e-3)
    finally:
        store.close()


def test_writer_and_store_exclude_each_other(tmp_path: Path) -> None:
    store = FaissStore.open(tmp_path, DIM, settings())
    try:
        with pytest.raises(StoreLocked):
            BulkWriter.open(tmp_path, DIM)
    finally:
        store.close()
    with BulkWriter.open(tmp_path, DIM), pytest.raises(StoreLocked):
        FaissStore.open(tmp_path, DIM, settings())


def test_writer_refuses_another_model_or_dim(tmp_path: Path) -> None:
    with BulkWriter.open(tmp_path, DIM, "sha-a") as writer:
        writer.append(["a"], unit_rows(1, 1))
    with pytest.raises(ArtifactMismatch):
        BulkWriter.open(tmp_path, DIM, "sha-b")
    with pytest.raises(ArtifactMismatch):
        BulkWriter.open(tmp_path, DIM + 1, "sha-a")


def test_large_load_retires_the_snapshot_small_one_replays(tmp_path: Path) -> None:
    store = FaissStore.open(tmp_path, DIM, settings())
    store.add([f"s{i}" for i in range(10)], unit_rows(10, 2))
    store.close()  # snapshot of a 10-row flat index
    assert (tmp_path / MANIFEST_FILE).exists()
    with BulkWriter.open(tmp_path, DIM) as writer:
        writer.append(["t0", "t1"], unit_rows(2, 3))
    assert (tmp_path / MANIFEST_FILE).exists()  # 2 rows onto 10: replayed at open
    with BulkWriter.open(tmp_path, DIM) as writer:
        writer.append([f"u{i}" for i in range(20)], unit_rows(20, 4))
    assert not (tmp_path / MANIFEST_FILE).exists()  # 20 onto 12: built from all rows
    store = FaissStore.open(tmp_path, DIM, settings())
    try:
        assert len(store) == 32
        q = unit_rows(20, 4)[7:8]
        assert store.search(q, 1)[0][0].id == "u7"
    finally:
        store.close()
