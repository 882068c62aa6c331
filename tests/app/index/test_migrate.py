"""app/index/migrate.py: a copy between any two stores through the `VectorStore` protocol is
exact (vectors, metadata, thumbnails, created_at; replaced and deleted items as the source
has them), resumes where an interrupted run stopped, and carries the source's model guard.
FAISS -> FAISS here; Milvus -> FAISS on the test run's real Milvus server (marker `milvus`);
FAISS -> Milvus in tests/workbench/test_copy_to_milvus.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.config import FaissSettings, FaissStoreSettings, Settings, StoreSettings
from app.errors import ArtifactMismatch, StoreCorrupt
from app.index.faiss_store import FaissStore
from app.index.migrate import copy_store
from app.index.store import Item, VectorStore
from tests.app.index.backends import MilvusHarness
from tests.app.index.data import sphere_blobs

DIM = 32
SHA = "e" * 64
N = 150


class Interrupted(Exception):
    pass


def faiss_side(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, store=StoreSettings(backend="faiss", faiss=FaissSettings(threads=1))
    )


def fill(store: VectorStore) -> tuple[dict[str, Item], dict[str, bytes | None]]:
    """N items (some without metadata or thumbnail), one replaced, one deleted; returns what
    the store then holds: items with vectors, and thumbnails."""
    base = sphere_blobs(N + 1, DIM, seed=11)
    ids = [f"m/{i:03d}" for i in range(N)]
    metas = [{"i": i} if i % 3 else None for i in range(N)]
    thumbs = [bytes([i % 256]) * 40 if i % 4 == 0 else None for i in range(N)]
    store.add(ids, base[:N], metas, thumbs)
    store.add([ids[5]], base[N:], [{"replaced": True}], [b"new"])
    assert store.delete(ids[7])
    live = [i for i in ids if i != ids[7]]
    items = {item.id: item for item in store.get_many(live, with_vectors=True)}
    return items, {i: store.thumbnail(i) for i in live}


def assert_same(store: VectorStore, items: dict[str, Item], thumbs: dict[str, bytes | None]):
    assert len(store) == len(items)
    got = {item.id: item for item in store.get_many(sorted(items), with_vectors=True)}
    assert sorted(got) == sorted(items)
    for item_id, want in items.items():
        have = got[item_id]
        assert have.metadata == want.metadata and have.created_at == want.created_at
        assert have.vector is not None and want.vector is not None
        np.testing.assert_array_equal(have.vector, want.vector)
        assert store.thumbnail(item_id) == thumbs[item_id]


def test_faiss_to_faiss_is_exact_and_resumes(tmp_path: Path) -> None:
    settings = FaissStoreSettings(threads=1)
    with FaissStore.open(tmp_path / "a" / "store", DIM, settings, model_sha256=SHA) as src:
        items, thumbs = fill(src)
    source, target = faiss_side(tmp_path / "a"), faiss_side(tmp_path / "b")
    state = tmp_path / "state.json"
    batches: list[int] = []

    def stop_after_two(n: int) -> None:
        batches.append(n)
        if len(batches) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        copy_store(source, target, state, batch=40, progress=stop_after_two)
    assert json.loads(state.read_text())["copied"] == 80

    report = copy_store(source, target, state, batch=40)
    assert (report.source_live, report.skipped_as_done) == (N - 1, 80)
    assert report.copied_now == N - 1 - 80 and report.target_count == N - 1
    again = copy_store(source, target, state, batch=40)  # finished: nothing to do
    assert again.copied_now == 0 and again.target_count == N - 1

    with FaissStore.open(tmp_path / "b" / "store", DIM, settings, model_sha256=SHA) as dst:
        assert_same(dst, items, thumbs)
        query = items["m/010"].vector
        assert query is not None
        assert dst.search(query[None, :], 1)[0][0].id == "m/010"
    # The copy records the source's model: another model is refused as on the source.
    with pytest.raises(ArtifactMismatch, match="model"):
        FaissStore.open(tmp_path / "b" / "store", DIM, settings, model_sha256="f" * 64)


def test_a_state_file_of_another_target_is_refused(tmp_path: Path) -> None:
    with FaissStore.open(tmp_path / "a" / "store", DIM, FaissStoreSettings(threads=1)) as src:
        fill(src)
    state = tmp_path / "state.json"
    copy_store(faiss_side(tmp_path / "a"), faiss_side(tmp_path / "b"), state, batch=64)
    with pytest.raises(ValueError, match="records a copy into"):
        copy_store(faiss_side(tmp_path / "a"), faiss_side(tmp_path / "c"), state)


def test_the_previous_releases_state_file_restarts_the_copy(tmp_path: Path) -> None:
    with FaissStore.open(tmp_path / "a" / "store", DIM, FaissStoreSettings(threads=1)) as src:
        fill(src)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"collection": "simsearch", "next_row": 90}))
    report = copy_store(faiss_side(tmp_path / "a"), faiss_side(tmp_path / "b"), state)
    assert report.skipped_as_done == 0 and report.target_count == N - 1


def test_no_source_and_same_store_are_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with pytest.raises(StoreCorrupt, match="no store there"):
        copy_store(faiss_side(tmp_path / "none"), faiss_side(tmp_path / "b"), state)
    with pytest.raises(ValueError, match="same store"):
        copy_store(faiss_side(tmp_path / "a"), faiss_side(tmp_path / "a"), state)


@pytest.mark.milvus
def test_milvus_to_faiss_is_exact(tmp_path: Path, milvus_server) -> None:
    harness = MilvusHarness(milvus_server.uri)
    try:
        src = harness.open(DIM, SHA)
        try:
            items, thumbs = fill(src)
        finally:
            src.close()
        source = Settings(
            store=StoreSettings(
                backend="milvus",
                milvus={"uri": milvus_server.uri, "collection": harness.collection},
            )
        )
        report = copy_store(source, faiss_side(tmp_path / "b"), tmp_path / "state.json", batch=64)
        assert report.source_live == N - 1 and report.target_count == N - 1
    finally:
        harness.cleanup()
    with FaissStore.open(
        tmp_path / "b" / "store", DIM, FaissStoreSettings(threads=1), model_sha256=SHA
    ) as dst:
        assert_same(dst, items, thumbs)
