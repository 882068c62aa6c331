"""The `VectorStore` contract, written once and run against every backend.

FAISS runs in every `make test`; Milvus runs against a real Milvus server (marker `milvus`,
session fixture in tests/conftest.py). References are brute force over what was stored:
exact inner products with the fp16-rounded vectors and `MetadataFilter.matches`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.errors import ArtifactMismatch, InvalidRequest
from app.index.filters import MetadataFilter, parse_filter
from app.index.store import InvalidVectors, VectorStore
from tests.app.index.backends import FaissHarness, MilvusHarness, StoreHarness
from tests.app.index.data import fp16, sphere_blobs

DIM = 32
SHA_A = "a" * 64
SHA_B = "b" * 64
MAX_ID_LENGTH = 512  # LimitSettings.max_id_length: the longest id the API lets through

BACKENDS = [
    pytest.param("faiss", id="faiss"),
    pytest.param("milvus", id="milvus", marks=pytest.mark.milvus),
]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreHarness]:
    h: StoreHarness
    if request.param == "faiss":
        h = FaissHarness(tmp_path / "store")
    else:
        server = request.getfixturevalue("milvus_server")
        h = MilvusHarness(server.uri)
    yield h
    h.cleanup()


@pytest.fixture
def store(harness: StoreHarness) -> Iterator[VectorStore]:
    s = harness.open(DIM, SHA_A)
    yield s
    s.close()


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return sphere_blobs(400, DIM, clusters=12, seed=3)


def ids_for(start: int, stop: int) -> list[str]:
    return [f"img-{i:05d}" for i in range(start, stop)]


def brute_force(
    stored: dict[str, np.ndarray], query: np.ndarray, k: int
) -> list[tuple[str, float]]:
    """Exact top-k over the fp16-rounded stored vectors; ties broken by id."""
    scored = [(i, float(fp16(v[None])[0] @ query)) for i, v in stored.items()]
    scored.sort(key=lambda p: (-p[1], p[0]))
    return scored[:k]


def assert_same_ranking(
    got: list[tuple[str, float]], want: list[tuple[str, float]], tol: float = 1e-4
) -> None:
    """Equal up to ties: same scores position by position, and the same ids wherever the
    reference score is not tied with its neighbours."""
    assert len(got) == len(want), (got, want)
    for (gid, gs), (wid, ws) in zip(got, want, strict=True):
        assert abs(gs - ws) <= tol, (got, want)
        tied = sum(abs(s - ws) <= tol for _, s in want) > 1
        if not tied:
            assert gid == wid, (got, want)


# ---------------------------------------------------------------------- basics
def test_protocol_and_empty_store(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    assert store.dim == DIM and len(store) == 0
    assert store.search(np.full((2, DIM), 0.1, np.float32), 5) == [[], []]
    assert store.get("nope") is None and store.thumbnail("nope") is None
    assert store.contains(["nope"]) == set()
    page = store.list_items(10)
    assert (page.items, page.next_cursor, page.total) == ([], None, 0)
    assert store.delete("nope") is False
    assert store.availability() is None
    stats = store.stats()
    assert (stats.ntotal, stats.dim) == (0, DIM)


def test_add_get_metadata_and_thumbnail_round_trip(store: VectorStore, base: np.ndarray) -> None:
    meta = [{"n": 1, "ü": "ß", "nested": {"a": [1, 2.5, None, True]}}, None, {}]
    thumbs = [b"\xff\xd8jpeg-bytes\x00\xff", None, b"\x00"]
    before = time.time()
    assert store.add(["a", "b", "c"], base[:3], meta, thumbs) == ["a", "b", "c"]
    assert len(store) == 3 and store.contains(["a", "c", "zz"]) == {"a", "c"}
    for item_id, vec, m, t in zip("abc", base[:3], meta, thumbs, strict=True):
        item = store.get(item_id, with_vector=True)
        assert item is not None and item.id == item_id
        assert item.metadata == m
        assert item.vector is not None and item.vector.dtype == np.float32
        np.testing.assert_array_equal(item.vector, fp16(vec[None])[0])
        assert before - 1 <= item.created_at <= time.time() + 1
        assert store.thumbnail(item_id) == t
        assert item.has_thumbnail is (t is not None)
    assert store.get("a").vector is None  # type: ignore[union-attr]


def test_replace_delete_and_thumbnails_go_with_the_item(
    store: VectorStore, base: np.ndarray
) -> None:
    store.add(["x", "y"], base[:2], [{"v": 1}, {"v": 1}], [b"old-x", b"old-y"])
    # Replace x with a thumbnail, y without one: y's old thumbnail must not survive.
    store.add(["x", "y"], base[2:4], [{"v": 2}, None], [b"new-x", None])
    assert len(store) == 2
    x, y = store.get("x", with_vector=True), store.get("y")
    assert x is not None and x.metadata == {"v": 2} and x.has_thumbnail
    np.testing.assert_array_equal(x.vector, fp16(base[2:3])[0])  # type: ignore[arg-type]
    assert y is not None and y.metadata is None and not y.has_thumbnail
    assert store.thumbnail("x") == b"new-x" and store.thumbnail("y") is None
    hits = store.search(base[2:3], 2)[0]
    assert [h.id for h in hits].count("x") == 1 and hits[0].id == "x"
    assert store.delete("x") is True and store.delete("x") is False
    assert store.get("x") is None and store.thumbnail("x") is None
    assert "x" not in {h.id for h in store.search(base[2:3], 5)[0]}
    assert len(store) == 1 and store.contains(["x", "y"]) == {"y"}
    # Re-adding a deleted id brings it back as a new item.
    store.add(["x"], base[5:6])
    assert store.get("x") is not None and store.thumbnail("x") is None


def test_rejects_bad_input(store: VectorStore, base: np.ndarray) -> None:
    bad_calls = [
        lambda: store.add(["a"], base[:1, :-1]),
        lambda: store.add(["a", "b"], base[:1]),
        lambda: store.add(["a", "a"], base[:2]),
        lambda: store.add([""], base[:1]),
        lambda: store.add(["a"], np.full((1, DIM), np.nan, np.float32)),
        lambda: store.add(["a"], base[:1], [{"x": 1}, None]),
        lambda: store.add(["a"], base[:1], None, [b"1", b"2"]),
        lambda: store.search(base[:1], 0),
        lambda: store.search(base[:1, :-1], 3),
        lambda: store.list_items(0),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidVectors):
            call()
    assert len(store) == 0


# ---------------------------------------------------------------------- search
def test_search_equals_brute_force_with_threshold_and_vectors(
    store: VectorStore, base: np.ndarray
) -> None:
    ids = ids_for(0, 300)
    store.add(ids, base[:300], [{"i": i} for i in range(300)])
    stored = dict(zip(ids, base[:300], strict=True))
    queries = base[300:310]
    results = store.search(queries, 10, with_vectors=True)
    for q, hits in zip(queries, results, strict=True):
        assert_same_ranking([(h.id, h.score) for h in hits], brute_force(stored, q, 10))
        for h in hits:
            assert h.metadata == {"i": int(h.id[4:])}
            np.testing.assert_array_equal(h.vector, fp16(stored[h.id][None])[0])
    # score_threshold keeps exactly the reference hits at or above it.
    q = queries[0]
    want = brute_force(stored, q, 50)
    threshold = want[20][1]
    got = store.search(q[None], 50, score_threshold=threshold)[0]
    assert all(h.score >= threshold - 1e-4 for h in got)
    assert {h.id for h in got} >= {i for i, s in want if s >= threshold + 1e-4}
    assert len(got) <= sum(s >= threshold - 1e-4 for _, s in want)
    # k beyond the collection returns everything, best first.
    everything = store.search(q[None], 1000)[0]
    assert len(everything) == 300
    assert all(a.score >= b.score - 1e-6 for a, b in itertools.pairwise(everything))


FILTER_METADATA = [
    {"album": "trip", "year": 2023, "flag": True, "n": 1},
    {"album": "Trip", "year": 2023.0, "flag": False, "n": 1.0},
    {"album": "home", "year": 2024, "flag": 1, "n": True},
    {"album": "trip", "year": "2023", "n": 0},
    {"album": ["trip"], "year": None},
    {"other": "trip"},
    None,
    {"album": "work", "year": 2025, "flag": True, "n": 2.5},
]
FILTERS = [
    {"album": "trip"},
    {"year": 2023},
    {"year": {"in": [2023, 2024]}},
    {"flag": True},
    {"flag": False},
    {"n": 1},
    {"n": True},
    {"year": "2023"},
    {"album": {"in": ["trip", "home"]}, "flag": True},
    {"n": 2.5},
    {"missing": 1},
    {"album": "trip", "n": {"in": [0, 1]}},
]


def test_filtered_search_equals_brute_force(store: VectorStore, base: np.ndarray) -> None:
    """Up to k hits that all match, equal to brute force over `MetadataFilter.matches`:
    bool vs number, 1 == 1.0, strings exact, missing keys and non-scalars never match."""
    ids = ids_for(0, 240)
    metas = [FILTER_METADATA[i % len(FILTER_METADATA)] for i in range(240)]
    store.add(ids, base[:240], metas)
    for flt in FILTERS:
        parsed = parse_filter(flt)
        assert isinstance(parsed, MetadataFilter)
        matching = {
            i: v for i, v, m in zip(ids, base[:240], metas, strict=True) if parsed.matches(m)
        }
        for q in base[240:242]:
            got = store.search(q[None], 10, filter=parsed)[0]
            assert all(parsed.matches(h.metadata) for h in got), flt
            assert_same_ranking([(h.id, h.score) for h in got], brute_force(matching, q, 10))


# ---------------------------------------------------------------------- listing
def test_list_items_pages_in_id_order(store: VectorStore, base: np.ndarray) -> None:
    ids = ["b/2", "a", "b/1", "b/10", "c", "é", "B", "b"]
    store.add(ids, base[: len(ids)], None, [None, b"t", None, None, None, None, None, None])
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_items(3, cursor)
        assert page.total == len(ids) and len(page.items) <= 3
        assert all(item.vector is None for item in page.items)
        seen += [item.id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(ids)  # code-point order
    assert [i.has_thumbnail for i in store.list_items(10).items] == [i == "a" for i in seen]
    prefixed = store.list_items(2, id_prefix="b/")
    assert [i.id for i in prefixed.items] == ["b/1", "b/10"] and prefixed.total == 3
    rest = store.list_items(2, prefixed.next_cursor, id_prefix="b/")
    assert [i.id for i in rest.items] == ["b/2"] and rest.next_cursor is None
    for bad in ("not-a-cursor", "i1.!!!", "i1.", 'i1."'):
        with pytest.raises(InvalidRequest):
            store.list_items(3, bad)


def test_listing_is_stable_under_concurrent_adds_and_deletes(
    store: VectorStore, base: np.ndarray
) -> None:
    """Ids live throughout appear exactly once and in order, whatever changes meanwhile."""
    stable = ids_for(0, 120)
    churn = [f"img-{i:05d}x" for i in range(120)]
    store.add(stable, base[:120])
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(1)
        try:
            for _ in range(200):  # bounded: a slow backend must not make this test slow
                if stop.is_set():
                    break
                pick = rng.sample(churn, 4)
                store.add(pick, base[120:124])
                store.delete(rng.choice(pick))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2):
            seen: list[str] = []
            cursor = None
            while True:
                page = store.list_items(23, cursor)
                seen += [i.id for i in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == sorted(set(seen))  # ascending, no repeats
            assert set(stable) <= set(seen)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors


# ---------------------------------------------------------------------- durability, guard
def test_restart_keeps_items_deletes_and_thumbnails(
    harness: StoreHarness, base: np.ndarray
) -> None:
    store = harness.open(DIM, SHA_A)
    try:
        store.add(ids_for(0, 50), base[:50], [{"i": i} for i in range(50)])
        store.add(["img-00003"], base[60:61], [{"i": "replaced"}], [b"thumb"])
        assert store.delete("img-00007")
    finally:
        store.close()
    store = harness.open(DIM, SHA_A)
    try:
        assert len(store) == 49 and store.get("img-00007") is None
        item = store.get("img-00003", with_vector=True)
        assert item is not None and item.metadata == {"i": "replaced"}
        np.testing.assert_array_equal(item.vector, fp16(base[60:61])[0])  # type: ignore[arg-type]
        assert store.thumbnail("img-00003") == b"thumb"
        assert store.search(base[20:21], 1)[0][0].id == "img-00020"
    finally:
        store.close()


def test_refuses_a_store_built_by_another_model_or_dim(harness: StoreHarness) -> None:
    store = harness.open(DIM, SHA_A)
    store.close()
    with pytest.raises(ArtifactMismatch, match="model"):
        harness.open(DIM, SHA_B)
    with pytest.raises(ArtifactMismatch):
        harness.open(DIM * 2, SHA_A)
    harness.open(DIM, SHA_A).close()  # the right model still opens it


def test_concurrent_adds_and_searches(store: VectorStore, base: np.ndarray) -> None:
    errors: list[BaseException] = []

    def add(part: int) -> None:
        try:
            for lo in range(part * 100, part * 100 + 100, 20):
                store.add(ids_for(lo, lo + 20), base[lo : lo + 20])
        except BaseException as exc:
            errors.append(exc)

    def search() -> None:
        try:
            for i in range(30):
                hits = store.search(base[i : i + 1], 5)[0]
                assert len({h.id for h in hits}) == len(hits)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(p,)) for p in range(3)]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(store) == 300
    for i in (0, 150, 299):
        assert store.search(base[i : i + 1], 1)[0][0].id == f"img-{i:05d}"


def test_ids_at_the_length_and_character_limits(store: VectorStore, base: np.ndarray) -> None:
    ids = [
        "x" * MAX_ID_LENGTH,
        "😀" * MAX_ID_LENGTH,  # 4 UTF-8 bytes each
        "quote\"s and 'single' \\ back\\slash",
        "path/with spaces/ünïcödé.jpg",
        "a]b[c)d(e{f}g,h;i",
        "in [\"a\"] or id != ''",
        "% _ * ? like-wildcards",
    ]
    store.add(ids, base[: len(ids)], [{"k": i} for i in range(len(ids))], [b"t"] * len(ids))
    assert store.contains(ids) == set(ids)
    for i, item_id in enumerate(ids):
        item = store.get(item_id)
        assert item is not None and item.id == item_id and item.metadata == {"k": i}
        assert store.thumbnail(item_id) == b"t"
        assert store.search(base[i : i + 1], 1)[0][0].id == item_id
    assert [i.id for i in store.list_items(len(ids)).items] == sorted(ids)
    for item_id in ids:
        assert store.delete(item_id)
    assert len(store) == 0 and store.contains(ids) == set()
