"""workbench/copy_to_milvus.py against a real Milvus server: everything live is copied bit for
bit (vectors, metadata, thumbnails, created_at), an interrupted copy resumes where it stopped,
and the collection carries the source's model guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.config import FaissStoreSettings, IndexSettings, Settings, StoreSettings
from app.errors import ArtifactMismatch
from app.index.faiss_store import FaissStore
from app.index.migrate import copy_store
from app.index.milvus_store import MilvusStore
from tests.app.index.backends import milvus_store_settings
from tests.app.index.data import fp16, sphere_blobs
from workbench import copy_to_milvus
from workbench.servers.milvus_server import LocalMilvus

pytestmark = pytest.mark.milvus

DIM = 32
SHA = "c" * 64


class Interrupted(Exception):
    pass


def test_copy_is_exact_and_resumable(
    tmp_path: Path, milvus_server: LocalMilvus, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    base = sphere_blobs(310, DIM, seed=5)
    ids = [f"copy/{i:04d}" for i in range(300)]
    metas = [{"i": i, "even": i % 2 == 0} if i % 3 else None for i in range(300)]
    thumbs = [bytes([i % 256]) * 50 if i % 4 == 0 else None for i in range(300)]
    with FaissStore.open(data_dir / "store", DIM, FaissStoreSettings(), model_sha256=SHA) as src:
        src.add(ids, base[:300], metas, thumbs)
        src.add([ids[5]], base[300:301], [{"replaced": True}], [b"new"])
        assert src.delete(ids[7])
        expected = {i: src.get(i, with_vector=True) for i in ids if i != ids[7]}
        expected_thumbs = {i: src.thumbnail(i) for i in expected}

    collection = "copy_target"
    settings = milvus_store_settings(milvus_server.uri, collection)
    state = tmp_path / "state.json"
    copied_batches: list[int] = []

    def stop_after_two(n: int) -> None:
        copied_batches.append(n)
        if len(copied_batches) == 2:
            raise Interrupted

    source = Settings(data_dir=data_dir, store=StoreSettings(backend="faiss"))
    target = Settings(store=StoreSettings(backend="milvus", milvus=settings))
    with pytest.raises(Interrupted):
        copy_store(source, target, state, batch=64, progress=stop_after_two)
    assert collection in json.loads(state.read_text())["target"]

    code = copy_to_milvus.main(
        [
            "--data-dir", str(data_dir),
            "--milvus-uri", milvus_server.uri,
            "--collection", collection,
            "--state-file", str(state),
            "--batch", "64",
            "--no-progress",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["source_live"] == 299 and report["collection_count"] == 299
    assert report["skipped_as_done"] == 128 and report["copied_now"] == 299 - 128

    with MilvusStore.open(settings, DIM, IndexSettings(), model_sha256=SHA) as dst:
        assert len(dst) == 299 and dst.get(ids[7]) is None
        # Every item, in bulk: one listing page (metadata, created_at, has_thumbnail) and one
        # search per item's own vector (exact vector round trip: score 1 and vector equal).
        page = dst.list_items(1000)
        assert [i.id for i in page.items] == sorted(expected)
        for got in page.items:
            want = expected[got.id]
            assert got.metadata == want.metadata and got.created_at == want.created_at
            assert got.has_thumbnail == (expected_thumbs[got.id] is not None)
        order = sorted(expected)
        queries = np.stack([expected[i].vector for i in order])
        for item_id, hits in zip(order, dst.search(queries, 1, with_vectors=True), strict=True):
            assert hits[0].id == item_id
            np.testing.assert_array_equal(hits[0].vector, expected[item_id].vector)
        for item_id in order[::25]:
            assert dst.thumbnail(item_id) == expected_thumbs[item_id]
        replaced = dst.get(ids[5], with_vector=True)
        assert replaced is not None and replaced.metadata == {"replaced": True}
        np.testing.assert_array_equal(replaced.vector, fp16(base[300:301])[0])
        hit = dst.search(base[10:11], 1)[0][0]
        assert hit.id == ids[10]
    with pytest.raises(ArtifactMismatch, match="model"):
        MilvusStore.open(settings, DIM, IndexSettings(), model_sha256="d" * 64)
