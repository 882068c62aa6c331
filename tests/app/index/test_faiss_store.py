from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.config import FaissStoreSettings
from app.errors import ArtifactMismatch, StoreCorrupt
from app.index import faiss_store
from app.index.faiss_store import (
    MANIFEST_FILE,
    VECTORS_FILE,
    FaissStore,
    StoreLocked,
    choose_ivf_params,
    ivf_min_vectors,
)
from app.index.rebuild import rebuild_store
from app.index.store import InvalidVectors, VectorStore
from tests.app.index.data import exact_topk, fp16, sphere_blobs

DIM = 32
SHA_A = "a" * 64
SHA_B = "b" * 64
# The store logs from its modules (faiss_store, snapshots, ivf, maintenance).
LOGGER = "app.index"


def flat_settings(**overrides: object) -> FaissStoreSettings:
    # Threshold far away: these stores stay exact.
    return FaissStoreSettings(**{"ivf_min_vectors": 1_000_000, "threads": 1, **overrides})


def ivf_settings(**overrides: object) -> FaissStoreSettings:
    # Test-sized IVF-PQ: switch at 1500 live vectors; 2000 x 32-d -> IVF32,PQ4x5np.
    return FaissStoreSettings(
        **{
            "ivf_min_vectors": 1500,
            "training_sample": 2000,
            "nprobe": 8,
            "candidate_factor": 8,
            "retrain_growth": 100.0,
            "threads": 1,
            **overrides,
        }
    )


def ids_for(start: int, stop: int) -> list[str]:
    return [f"img-{i:05d}" for i in range(start, stop)]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def flat_store(store_dir: Path) -> Iterator[FaissStore]:
    store = FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_A)
    yield store
    store.close()


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return sphere_blobs(2000, DIM, clusters=40, seed=7)


def crash_copy(store: FaissStore, dst: Path) -> Path:
    """The files a crash right now would leave behind (the live store is not closed).

    sqlite's -shm is a rebuildable cache and the lock is per process: neither is copied.
    """
    assert store.wait_idle(30)
    shutil.copytree(store.directory, dst, ignore=shutil.ignore_patterns("*-shm", "store.lock"))
    return dst


def search_ids(store: FaissStore, queries: np.ndarray, k: int, **kw: object) -> list[list[str]]:
    return [[h.id for h in hits] for hits in store.search(queries, k, **kw)]


# ---------------------------------------------------------------------- parameters
def test_choose_ivf_params_formula() -> None:
    big = choose_ivf_params(1_000_000, 512)
    assert big == {
        "nlist": 4096,
        "m": 64,
        "nbits": 8,
        "factory": "IVF4096,PQ64x8np",
        "metric": "inner_product",
    }
    small = choose_ivf_params(2000, DIM)
    assert (small["nlist"], small["m"], small["nbits"]) == (32, 4, 5)
    assert small["factory"] == "IVF32,PQ4x5np"
    # A small training sample caps nlist at the 39-points-per-centroid floor.
    assert choose_ivf_params(10_000_000, 512, n_train=200_000)["nlist"] == 4096
    for n in (700, 5_000, 19_968, 40_000, 300_000, 3_000_000):
        p = choose_ivf_params(n, 512)
        assert n >= 39 * p["nlist"] and p["nlist"] & (p["nlist"] - 1) == 0
    # PQ needs m | d.
    assert choose_ivf_params(50_000, 100)["m"] == 10
    assert choose_ivf_params(50_000, 36)["m"] == 4
    assert choose_ivf_params(50_000, 7)["m"] == 1
    # Every factory string is one FAISS builds.
    faiss.index_factory(DIM, small["factory"], faiss.METRIC_INNER_PRODUCT)


def test_default_switch_threshold_meets_the_training_floor() -> None:
    n = ivf_min_vectors(FaissStoreSettings())
    assert n == 19_968
    # At the threshold the un-capped 4 sqrt(n) rule already satisfies n >= 39 nlist ...
    assert choose_ivf_params(n, 512)["nlist"] == 512 == 39 * 512 // 39
    assert ivf_min_vectors(FaissStoreSettings(ivf_min_vectors=1234)) == 1234


# ---------------------------------------------------------------------- add / get / delete
def test_protocol_and_empty_store(flat_store: FaissStore) -> None:
    assert isinstance(flat_store, VectorStore)
    assert len(flat_store) == 0
    assert flat_store.search(np.zeros((2, DIM), np.float32) + 0.1, 5) == [[], []]
    stats = flat_store.stats()
    assert (stats.index_type, stats.ntotal, stats.dim, stats.training) == ("flat", 0, DIM, False)


def test_add_get_delete_readd(flat_store: FaissStore, base: np.ndarray) -> None:
    x = base[:10]
    out = flat_store.add(ids_for(0, 10), x, [{"i": i} for i in range(10)])
    assert out == ids_for(0, 10)
    assert len(flat_store) == 10
    item = flat_store.get("img-00003", with_vector=True)
    assert item.metadata == {"i": 3} and item.created_at > 0
    np.testing.assert_array_equal(item.vector, fp16(x[3]))
    assert flat_store.get("img-00003").vector is None
    assert flat_store.get("nope") is None
    assert flat_store.contains(["img-00001", "nope"]) == {"img-00001"}

    assert flat_store.delete("img-00003") is True
    assert flat_store.delete("img-00003") is False
    assert flat_store.get("img-00003") is None and len(flat_store) == 9
    hits = flat_store.search(x[3:4], 10)[0]
    assert "img-00003" not in [h.id for h in hits] and len(hits) == 9

    # Re-adding an id replaces it: new vector, new metadata, one live version.
    flat_store.add(["img-00005", "img-00003"], base[100:102], [{"v": 2}, None])
    assert len(flat_store) == 10
    assert flat_store.get("img-00005").metadata == {"v": 2}
    hits = flat_store.search(base[100:101], 10)[0]
    assert hits[0].id == "img-00005" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.id for h in hits].count("img-00005") == 1
    old = flat_store.search(x[5:6], 1)[0][0]
    assert old.id != "img-00005" or old.score < 0.99
    stats = flat_store.stats()
    assert (stats.ntotal, stats.rows, stats.tombstones) == (10, 12, 2)


def test_add_rejects_bad_input(flat_store: FaissStore, base: np.ndarray) -> None:
    x = base[:3]
    bad_calls = [
        (["a", "b", "a"], x, None, "duplicate ids"),
        (["a", "b"], x, None, "3 vectors for 2 ids"),
        (["a", "b", "c"], x[:, :16], None, "shape"),
        (["a", "", "c"], x, None, "non-empty strings"),
        (["a", "b", "c"], np.where(np.eye(3, DIM) > 0, np.nan, x), None, "NaN"),
        (["a", "b", "c"], x * 1e6, None, "float16 range"),
        (["a", "b", "c"], x, [{"a": 1}], "metadata entries"),
        (["a", "b", "c"], x, [{"a": {1, 2}}, None, None], "JSON"),
        (["a", "b", "c"], x, ["str", None, None], "JSON object"),
    ]
    for ids, vectors, metadata, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            flat_store.add(ids, vectors, metadata)
    with pytest.raises(InvalidVectors):
        flat_store.search(x, 0)
    with pytest.raises(InvalidVectors):
        flat_store.search(x[:, :8], 3)
    assert flat_store.add([], np.zeros((0, DIM), np.float32)) == []
    assert len(flat_store) == 0 and flat_store.stats().rows == 0


def test_failed_catalog_commit_rolls_back_the_vectors(
    flat_store: FaissStore, base: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat_store.add(ids_for(0, 5), base[:5])

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(flat_store._catalog, "upsert", fail)
    with pytest.raises(OSError, match="disk full"):
        flat_store.add(ids_for(5, 10), base[5:10])
    monkeypatch.undo()
    assert flat_store._vectors.rows == 5 and len(flat_store) == 5
    flat_store.add(ids_for(5, 10), base[5:10])
    assert search_ids(flat_store, base[7:8], 1) == [["img-00007"]]


# ---------------------------------------------------------------------- flat search
def test_flat_search_equals_brute_force(flat_store: FaissStore, base: np.ndarray) -> None:
    x = base[:1000]
    for start in range(0, 1000, 250):
        flat_store.add(ids_for(start, start + 250), x[start : start + 250])
    queries = sphere_blobs(20, DIM, clusters=40, seed=7 + 1000)  # same blob family, new draws
    ref_scores, ref_pos = exact_topk(fp16(x), queries, 10)
    results = flat_store.search(queries, 10)
    for qi, hits in enumerate(results):
        assert [h.id for h in hits] == [f"img-{p:05d}" for p in ref_pos[qi]]
        np.testing.assert_allclose([h.score for h in hits], ref_scores[qi], atol=1e-5)
        assert [h.row for h in hits] == list(ref_pos[qi])

    # Tombstones are never returned; the rest of the ranking is unchanged.
    dead = {int(p) for p in ref_pos[:, :3].ravel()}
    for p in dead:
        assert flat_store.delete(f"img-{p:05d}")
    alive = np.array([i for i in range(1000) if i not in dead])
    ref_scores, ref_pos = exact_topk(fp16(x[alive]), queries, 10)
    results = flat_store.search(queries, 10)
    for qi, hits in enumerate(results):
        assert [h.id for h in hits] == [f"img-{alive[p]:05d}" for p in ref_pos[qi]]


def test_score_threshold_and_with_vectors(flat_store: FaissStore, base: np.ndarray) -> None:
    flat_store.add(ids_for(0, 300), base[:300], [{"i": i} for i in range(300)])
    q = base[10:11]
    hits = flat_store.search(q, 50, score_threshold=0.8, with_vectors=True)[0]
    scores = fp16(base[:300]) @ q[0]
    assert len(hits) == min(50, int((scores >= 0.8).sum())) > 1
    assert all(h.score >= 0.8 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.metadata == {"i": int(h.id[4:])}
        np.testing.assert_array_equal(h.vector, fp16(base[int(h.id[4:])]))
    assert all(h.vector is None for h in flat_store.search(q, 5)[0])
    assert flat_store.search(q, 5, score_threshold=1.01) == [[]]


# ---------------------------------------------------------------------- persistence
def test_close_and_reopen_keeps_everything(store_dir: Path, base: np.ndarray) -> None:
    store = FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_A)
    store.add(ids_for(0, 500), base[:500], [{"i": i} for i in range(500)])
    store.delete("img-00002")
    before = search_ids(store, base[:5], 5)
    store.close()
    manifest = json.loads((store_dir / MANIFEST_FILE).read_text())
    assert manifest["generation"] == 1 and manifest["rows_covered"] == 500
    assert (store_dir / manifest["index_file"]).is_file()

    store = FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_A)
    try:
        assert search_ids(store, base[:5], 5) == before
        assert len(store) == 499 and store.get("img-00002") is None
        assert store.get("img-00499").metadata == {"i": 499}
        store.add(ids_for(500, 510), base[500:510])
        assert store.snapshot() == 2
        assert sorted(p.name for p in store_dir.glob("index-*.faiss")) == ["index-2.faiss"]
        assert store.snapshot() == 2  # nothing changed: no new generation
        assert store.stats().generation == 2
    finally:
        store.close()


def test_dim_or_model_mismatch_is_refused(store_dir: Path, base: np.ndarray) -> None:
    with FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_A) as store:
        store.add(ids_for(0, 3), base[:3])
    with pytest.raises(ArtifactMismatch, match=rf"{store_dir}.*32-d.*64-d"):
        FaissStore.open(store_dir, 64, flat_settings(), model_sha256=SHA_A)
    with pytest.raises(ArtifactMismatch, match=rf"{store_dir}.*model sha256 aaaaaaaaaaaa"):
        FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_B)
    # The refusals left the store intact and unlocked.
    with FaissStore.open(store_dir, DIM, flat_settings(), model_sha256=SHA_A) as store:
        assert len(store) == 3


def test_one_owner_per_directory(flat_store: FaissStore) -> None:
    with pytest.raises(StoreLocked, match="one owner"):
        FaissStore.open(flat_store.directory, DIM, flat_settings())


# ---------------------------------------------------------------------- crash recovery
@pytest.fixture
def crashed(tmp_path: Path, base: np.ndarray) -> Iterator[tuple[Path, list[list[str]]]]:
    """A store with a snapshot, then adds, a replace and a delete after it; crashed."""
    store = FaissStore.open(tmp_path / "live", DIM, flat_settings(), model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 400), base[:400])
        store.snapshot()
        store.add(ids_for(400, 600), base[400:600])
        store.add(["img-00001"], base[999:1000])  # replace after the snapshot
        store.delete("img-00010")
        expected = search_ids(store, base[:20], 5)
        copy = crash_copy(store, tmp_path / "crashed")
    finally:
        store.close()
    yield copy, expected


def _reopen_and_check(directory: Path, expected: list[list[str]], base: np.ndarray) -> FaissStore:
    store = FaissStore.open(directory, DIM, flat_settings(), model_sha256=SHA_A)
    assert len(store) == 599
    assert search_ids(store, base[:20], 5) == expected
    assert store.get("img-00010") is None
    np.testing.assert_array_equal(store.get("img-00001", with_vector=True).vector, fp16(base[999]))
    return store


def test_recovery_replays_rows_beyond_the_snapshot(
    crashed: tuple[Path, list[list[str]]], base: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    directory, expected = crashed
    with caplog.at_level(logging.INFO, logger=LOGGER):
        store = _reopen_and_check(directory, expected, base)
    try:
        assert "replayed 201 rows" in caplog.text
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["delete", "flip", "truncate", "missing-generation"])
def test_recovery_rebuilds_a_bad_index_file(
    crashed: tuple[Path, list[list[str]]],
    base: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    directory, expected = crashed
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    index_file = directory / manifest["index_file"]
    if damage == "delete":
        index_file.unlink()
    elif damage == "flip":
        data = bytearray(index_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index_file.write_bytes(bytes(data))
    elif damage == "truncate":
        index_file.write_bytes(index_file.read_bytes()[:100])
    else:
        manifest["generation"], manifest["index_file"] = 77, "index-77.faiss"
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = _reopen_and_check(directory, expected, base)
    try:
        assert caplog.records, "recovery must be logged"
        if damage in ("flip", "truncate"):
            assert len(list(directory.glob("index-1.faiss.corrupt-*"))) == 1
            assert "moved aside" in caplog.text
        else:
            assert "missing" in caplog.text
        assert store.stats().index_type == "flat"
    finally:
        store.close()
    # The rebuilt index was snapshotted; the next open loads it cleanly.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _reopen_and_check(directory, expected, base).close()
    assert not caplog.records


def test_recovery_from_unreadable_manifest_and_stale_temp_files(
    crashed: tuple[Path, list[list[str]]], base: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    directory, expected = crashed
    (directory / MANIFEST_FILE).write_text('{"generation": 1, "dim": ')  # torn JSON
    (directory / ".index-2.faiss.tmp").write_bytes(b"half a snapshot")
    (directory / ".manifest.json.tmp").write_text("{")
    with caplog.at_level(logging.WARNING):
        store = _reopen_and_check(directory, expected, base)
    try:
        assert "stale temp file" in caplog.text and "unreadable manifest" in caplog.text
        assert store.wait_idle(30)  # the background snapshot of the rebuild writes a temp file
        assert not list(directory.glob(".*.tmp"))
        assert len(list(directory.glob("manifest.json.corrupt-*"))) == 1
    finally:
        store.close()


def test_recovery_without_any_snapshot(tmp_path: Path, base: np.ndarray) -> None:
    store = FaissStore.open(tmp_path / "live", DIM, flat_settings())
    try:
        store.add(ids_for(0, 100), base[:100])
        store.delete("img-00004")
        expected = search_ids(store, base[:10], 3)
        copy = crash_copy(store, tmp_path / "crashed")
    finally:
        store.close()
    assert not (copy / MANIFEST_FILE).exists()
    with FaissStore.open(copy, DIM, flat_settings()) as store:
        assert len(store) == 99 and search_ids(store, base[:10], 3) == expected


def test_recovery_truncates_orphan_vector_rows(
    crashed: tuple[Path, list[list[str]]], base: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    directory, expected = crashed
    vectors = directory / VECTORS_FILE
    size = vectors.stat().st_size
    # An add that fsync'd its vectors and crashed before the catalog commit.
    with vectors.open("ab") as handle:
        handle.write(fp16(base[1500:1503]).astype("<f2").tobytes())
    with caplog.at_level(logging.WARNING):
        store = _reopen_and_check(directory, expected, base)
    try:
        assert "orphans" in caplog.text and vectors.stat().st_size == size
        store.add(["new"], base[1600:1601])
        assert search_ids(store, base[1600:1601], 1) == [["new"]]
    finally:
        store.close()


def test_lost_vectors_or_catalog_are_refused(
    crashed: tuple[Path, list[list[str]]], tmp_path: Path
) -> None:
    directory, _ = crashed
    other = shutil.copytree(directory, tmp_path / "other")
    vectors = directory / VECTORS_FILE
    vectors.write_bytes(vectors.read_bytes()[: DIM * 2 * 100])
    with pytest.raises(StoreCorrupt, match="vectors were lost"):
        FaissStore.open(directory, DIM, flat_settings(), model_sha256=SHA_A)
    for name in ("catalog.sqlite", "catalog.sqlite-wal"):
        (other / name).unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match=r"catalog\.sqlite is missing"):
        FaissStore.open(other, DIM, flat_settings(), model_sha256=SHA_A)


# ---------------------------------------------------------------------- IVF-PQ
def test_ivfpq_switch_recall_persistence_and_nprobe(
    store_dir: Path, base: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    queries = base[::50]  # 40 stored vectors as queries
    store = FaissStore.open(store_dir, DIM, ivf_settings(), model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 1400), base[:1400])
        assert store.stats().index_type == "flat"
        top_before = [hits[0].id for hits in store.search(queries[:28], 1)]
        with caplog.at_level(logging.INFO, logger=LOGGER):
            store.add(ids_for(1400, 2000), base[1400:2000])  # crosses 1500
            assert store.wait_for_training(60)
            assert store.wait_idle(60)
        stats = store.stats()
        assert stats.index_type == "ivfpq" and not stats.training and stats.ntotal == 2000
        assert stats.index_params["factory"] == "IVF32,PQ4x5np"
        assert stats.index_params["ntrained_on"] == 2000
        assert stats.generation >= 1  # snapshot after training
        assert "swapped in IVF32,PQ4x5np" in caplog.text

        # Recall@10 of ANN + exact re-scoring against brute force on the stored fp16 rows.
        _, ref_pos = exact_topk(fp16(base), queries, 10)
        results = store.search(queries, 10)
        recall = np.mean(
            [
                len({h.row for h in hits} & set(ref_pos[qi].tolist())) / 10
                for qi, hits in enumerate(results)
            ]
        )
        assert recall >= 0.9, recall
        for qi, hits in enumerate(results):
            # Scores are exact, not PQ approximations.
            np.testing.assert_allclose(
                [h.score for h in hits], fp16(base)[[h.row for h in hits]] @ queries[qi], atol=1e-5
            )
        assert [hits[0].id for hits in results[:28]] == top_before

        # nprobe per call; the shared index is never mutated.
        index = store._state.index
        default_nprobe = index.nprobe
        # One probed list (~2000/32 vectors) cannot yield 200 hits; all of them can.
        narrow = store.search(queries[:3], 200, nprobe=1, candidate_factor=1)
        wide = store.search(queries[:3], 200, nprobe=10_000, candidate_factor=1)
        assert index.nprobe == default_nprobe
        assert all(len(h) < 200 for h in narrow) and all(len(h) == 200 for h in wide)

        # Tombstones are never returned by the IVF index either.
        gone = [hits[0].id for hits in results[:10]]
        for item_id in gone:
            store.delete(item_id)
        for hits in store.search(queries, 10):
            assert not {h.id for h in hits} & set(gone)
        expected = search_ids(store, queries, 10)
    finally:
        store.close()

    # Reopen: the IVF-PQ snapshot is loaded, not retrained.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        store = FaissStore.open(store_dir, DIM, ivf_settings(), model_sha256=SHA_A)
    try:
        assert "loaded ivfpq snapshot" in caplog.text and "trained" not in caplog.text
        assert store.stats().index_type == "ivfpq"
        assert search_ids(store, queries, 10) == expected
    finally:
        store.close()


def test_ivfpq_rebuilt_at_open_when_the_snapshot_is_lost(
    store_dir: Path, base: np.ndarray, tmp_path: Path
) -> None:
    store = FaissStore.open(store_dir, DIM, ivf_settings(), model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 2000), base)
        assert store.wait_idle(60)
        expected = search_ids(store, base[:30], 5)
        copy = crash_copy(store, tmp_path / "crashed")
    finally:
        store.close()
    for path in copy.glob("index-*.faiss"):
        path.unlink()
    with FaissStore.open(copy, DIM, ivf_settings(), model_sha256=SHA_A) as store:
        assert store.stats().index_type == "ivfpq"
        got = search_ids(store, base[:30], 5)
        assert [g[0] for g in got] == [e[0] for e in expected]


def test_compaction_removes_tombstones_from_the_index(store_dir: Path, base: np.ndarray) -> None:
    settings = ivf_settings(compact_ratio=0.1)
    store = FaissStore.open(store_dir, DIM, settings, model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 2000), base)
        assert store.wait_idle(60)
        for i in range(0, 2000, 8):  # 250 deletes: 12.5% > 10%
            store.delete(f"img-{i:05d}")
        assert store.wait_idle(60)
        params = store.stats().index_params
        # Compaction ran once the 201st delete crossed 10% of the index; later deletes wait
        # for the next crossing.
        assert params["indexed"] - params["indexed_tombstones"] == 1750
        assert params["indexed"] < 1800 and params["indexed_tombstones"] <= 0.1 * 1800
        assert store.stats().index_type == "ivfpq"
        for hits in store.search(base[::8][:50], 10):
            assert all(int(h.id[4:]) % 8 for h in hits)
    finally:
        store.close()


def test_retrain_after_growth_and_background_snapshots(store_dir: Path) -> None:
    x = sphere_blobs(3400, DIM, clusters=40, seed=11)
    settings = ivf_settings(retrain_growth=2.0, snapshot_every=1000, training_sample=4000)
    store = FaissStore.open(store_dir, DIM, settings, model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 1600), x[:1600])
        assert store.wait_idle(60)
        assert store.stats().index_params["ntrained_on"] == 1600
        generation = store.stats().generation
        store.add(ids_for(1600, 3400), x[1600:])  # 3400 >= 2 x 1600
        assert store.wait_idle(60)
        stats = store.stats()
        assert stats.index_params["ntrained_on"] == 3400 and stats.generation > generation
        assert search_ids(store, x[3000:3001], 1) == [["img-03000"]]
    finally:
        store.close()


def test_concurrent_searches_during_adds_and_training(store_dir: Path, base: np.ndarray) -> None:
    store = FaissStore.open(store_dir, DIM, ivf_settings(), model_sha256=SHA_A)
    store.add(ids_for(0, 100), base[:100])
    errors: list[BaseException] = []
    stop = threading.Event()
    counts = [0, 0]

    def searcher(slot: int) -> None:
        rng = np.random.default_rng(slot)
        try:
            while not stop.is_set():
                q = base[rng.integers(0, 100, size=4)]
                for hits in store.search(q, 10, with_vectors=slot == 0):
                    assert hits and hits[0].score > 0.99
                    assert len({h.id for h in hits}) == len(hits)  # never an id twice
                counts[slot] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for start in range(100, 2000, 100):
            store.add(ids_for(start, start + 100), base[start : start + 100])
            # Replacements and deletes of ids the searchers are looking at.
            store.add(ids_for(start - 100, start - 95), base[start - 100 : start - 95])
            store.delete(f"img-{start + 50:05d}")
        assert store.wait_idle(60)
        assert store.stats().index_type == "ivfpq"
    finally:
        stop.set()
        for t in threads:
            t.join()
        store.close()
    assert not errors, errors
    assert min(counts) > 0


def test_offline_rebuild_reclaims_tombstoned_rows(tmp_path: Path, base: np.ndarray) -> None:
    source, target = tmp_path / "old", tmp_path / "new"
    with FaissStore.open(source, DIM, flat_settings(), model_sha256=SHA_A) as store:
        store.add(ids_for(0, 300), base[:300], [{"i": i} for i in range(300)])
        store.add(ids_for(0, 100), base[300:400])  # 100 replacements: tombstones
        for i in range(100, 150):
            store.delete(f"img-{i:05d}")
        created = store.get("img-00200").created_at
        expected = search_ids(store, base[:20], 5)
    assert rebuild_store(source, target, DIM, flat_settings(), model_sha256=SHA_A) == 250
    assert (target / VECTORS_FILE).stat().st_size == 250 * DIM * 2
    assert (source / VECTORS_FILE).stat().st_size == 400 * DIM * 2  # source untouched
    with FaissStore.open(target, DIM, flat_settings(), model_sha256=SHA_A) as store:
        stats = store.stats()
        assert (stats.ntotal, stats.rows, stats.tombstones) == (250, 250, 0)
        assert search_ids(store, base[:20], 5) == expected
        item = store.get("img-00200", with_vector=True)
        assert item.metadata == {"i": 200} and item.created_at == created
        np.testing.assert_array_equal(item.vector, fp16(base[200]))
        np.testing.assert_array_equal(
            store.get("img-00003", with_vector=True).vector, fp16(base[303])
        )
    with pytest.raises(ValueError, match="new or empty"):
        rebuild_store(source, target, DIM, flat_settings())


def test_writes_during_training_are_caught_up_before_the_swap(
    store_dir: Path, base: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hold training open, write meanwhile, then check the swapped index has every write."""
    gate, started = threading.Event(), threading.Event()
    build = faiss_store.build_ivfpq

    def gated_build(*args: object, **kwargs: object):
        started.set()
        assert gate.wait(30)
        return build(*args, **kwargs)

    monkeypatch.setattr(faiss_store, "build_ivfpq", gated_build)
    # Exercise both catch-up phases: unlocked while > 100 rows behind, then under the lock.
    monkeypatch.setattr("app.index.faiss_store._CATCHUP_UNDER_LOCK", 100)
    store = FaissStore.open(store_dir, DIM, ivf_settings(), model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 1500), base[:1500])
        assert started.wait(10)
        # Training is running: writes and exact searches go on against the flat index.
        store.add(ids_for(1500, 2000), base[1500:2000])
        store.add(ids_for(0, 5), base[1995:2000])  # replace 5 trained rows
        for i in (10, 1600):
            assert store.delete(f"img-{i:05d}")
        stats = store.stats()
        assert stats.training and stats.index_type == "flat"
        assert search_ids(store, base[1700:1701], 1) == [["img-01700"]]
        gate.set()
        assert store.wait_for_training(60)
        stats = store.stats()
        assert stats.index_type == "ivfpq" and stats.ntotal == 1998
        # 1500 trained rows (6 dead since: 5 replaced, 1 deleted) + the 504 rows written
        # meanwhile that were still live at catch-up (row 1600 was deleted before it).
        assert stats.index_params["indexed"] == 2004
        assert stats.index_params["indexed_tombstones"] == 6
        got = store.search(base[1500:2000], 1)
        for i, hits in zip(range(1500, 2000), got, strict=True):
            if i == 1600:
                assert hits[0].id != "img-01600"
            elif i >= 1995:  # same vector stored under two ids now
                assert hits[0].id in {f"img-{i:05d}", f"img-{i - 1995:05d}"}
            else:
                assert hits[0].id == f"img-{i:05d}"
        assert "img-00010" not in {h.id for h in store.search(base[10:11], 20)[0]}
        assert store.get("img-00003", with_vector=True).vector.tolist() == fp16(base[1998]).tolist()
    finally:
        gate.set()
        store.close()


def test_background_snapshot_every_n_adds(store_dir: Path, base: np.ndarray) -> None:
    store = FaissStore.open(store_dir, DIM, flat_settings(snapshot_every=100), model_sha256=SHA_A)
    try:
        store.add(ids_for(0, 60), base[:60])
        assert store.wait_idle(30) and store.stats().generation == 0
        store.add(ids_for(60, 120), base[60:120])
        assert store.wait_idle(30) and store.stats().generation == 1
        manifest = json.loads((store_dir / MANIFEST_FILE).read_text())
        assert manifest["rows_covered"] == 120 and manifest["model_sha256"] == SHA_A
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_broad_filters_search_through_the_index_with_a_selector(
    store_dir: Path, base: np.ndarray, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Filters matching more rows than the exact-scoring cap go through FAISS with a bitmap
    selector of the matching rows: every hit matches, and the ranking equals brute force
    among the matches (flat exactly; IVF-PQ at recall >= 0.9 with exact re-scored scores)."""
    from app.index.filters import parse_filter

    monkeypatch.setattr(faiss_store, "_EXACT_FILTER_MAX", 10)
    settings = flat_settings() if kind == "flat" else ivf_settings()
    store = FaissStore.open(store_dir, DIM, settings, model_sha256=SHA_A)
    try:
        metas = [{"group": i % 3, "odd": i % 2 == 1} for i in range(2000)]
        store.add(ids_for(0, 2000), base, metas)
        assert store.delete("img-00003")  # a tombstone inside the filter's rows
        if kind == "ivfpq":
            assert store.wait_for_training(60) and store.stats().index_type == "ivfpq"
        flt = parse_filter({"group": 0})
        assert flt is not None
        allowed = np.array([m["group"] == 0 and i != 3 for i, m in enumerate(metas)])
        queries = base[1:41]
        _, truth = exact_topk(fp16(base[allowed]), queries, 10)
        truth_ids = np.flatnonzero(allowed)[truth]
        found = store.search(queries, 10, filter=flt)
        overlap = []
        for hits, want in zip(found, truth_ids, strict=True):
            got = [int(h.id[4:]) for h in hits]
            assert len(got) == 10 and all(metas[i]["group"] == 0 and i != 3 for i in got)
            overlap.append(len(set(got) & set(want.tolist())) / 10)
        assert np.mean(overlap) == 1.0 if kind == "flat" else np.mean(overlap) >= 0.9
    finally:
        store.close()
