from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from app.index.catalog import Catalog


@pytest.fixture
def catalog(tmp_path: Path):
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    yield cat
    cat.close()


def _meta(values):
    return [None if v is None else json.dumps(v) for v in values]


def test_wal_and_full_sync(catalog: Catalog) -> None:
    conn = sqlite3.connect(catalog.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert catalog._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_upsert_lookup_contains_counts(catalog: Catalog) -> None:
    assert catalog.next_row == 0 and catalog.max_row() == -1
    replaced = catalog.upsert(["a", "b", "c"], _meta([{"n": 1}, None, {"ü": "ß"}]), 0, 10.0)
    assert replaced == []
    assert catalog.next_row == 3 and catalog.max_row() == 2
    a = catalog.lookup("a")
    assert a is not None and a.row == 0 and a.metadata == {"n": 1} and a.created_at == 10.0
    assert catalog.lookup("c").metadata == {"ü": "ß"}
    assert catalog.lookup("b").metadata is None
    assert catalog.lookup("zzz") is None
    assert catalog.contains(["a", "c", "x", "a"]) == {"a", "c"}
    counts = catalog.counts()
    assert (counts.rows, counts.live, counts.tombstones) == (3, 3, 0)


def test_upsert_replaces_live_rows_in_one_transaction(catalog: Catalog) -> None:
    catalog.upsert(["a", "b"], _meta([{"v": 1}, {"v": 1}]), 0)
    replaced = catalog.upsert(["c", "a"], _meta([None, {"v": 2}]), 2)
    # (old row, new row) pairs: "a" moved from row 0 to row 3.
    assert replaced == [(0, 3)]
    assert catalog.lookup("a").row == 3 and catalog.lookup("a").metadata == {"v": 2}
    info = catalog.rows_info([0, 1, 2, 3, 99])
    assert info[0].deleted and info[0].id == "a" and info[0].metadata == {"v": 1}
    assert not info[3].deleted and 99 not in info
    np.testing.assert_array_equal(catalog.live_rows(), [1, 2, 3])
    np.testing.assert_array_equal(catalog.live_rows(start=2), [2, 3])
    np.testing.assert_array_equal(catalog.live_mask(), [False, True, True, True])
    assert catalog.counts().tombstones == 1


def test_delete_is_a_tombstone(catalog: Catalog) -> None:
    catalog.upsert(["a", "b"], _meta([None, None]), 0)
    assert catalog.delete("a") == 0
    assert catalog.delete("a") is None
    assert catalog.delete("nope") is None
    assert catalog.lookup("a") is None
    assert catalog.contains(["a", "b"]) == {"b"}
    # Rows are never reused: max row still counts the tombstone.
    assert catalog.next_row == 2 and catalog.counts().live == 1
    assert catalog.upsert(["a"], _meta([None]), 2) == []  # re-add after delete: nothing replaced
    assert catalog.lookup("a").row == 2


def test_failed_transaction_rolls_back_everything(catalog: Catalog) -> None:
    catalog.upsert(["a"], _meta([None]), 0)
    with pytest.raises(ValueError, match="expected row 1"):
        catalog.upsert(["b"], _meta([None]), 5)
    # Duplicate ids in one batch violate the one-live-row-per-id index: nothing is kept,
    # not even the tombstone of the live "a".
    with pytest.raises(sqlite3.IntegrityError):
        catalog.upsert(["a", "a"], _meta([None, None]), 1)
    assert catalog.next_row == 1
    assert catalog.lookup("a").row == 0
    assert catalog.counts().rows == 1
    catalog.upsert(["b"], _meta([None]), 1)  # the writer is usable afterwards
    assert catalog.lookup("b").row == 1


def test_meta_and_rows_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    cat = Catalog.open(path)
    cat.set_meta("dim", "32")
    cat.set_meta("dim", "64")
    cat.upsert([f"id{i}" for i in range(1000)], _meta([{"i": i} for i in range(1000)]), 0)
    cat.delete("id7")
    cat.close()
    cat = Catalog.open(path)
    try:
        assert cat.get_meta("dim") == "64" and cat.get_meta("missing") is None
        assert cat.next_row == 1000
        assert cat.counts().live == 999
        assert cat.lookup("id999").metadata == {"i": 999}
        # More ids than sqlite's IN() chunk: exercised through contains and rows_info.
        assert len(cat.contains([f"id{i}" for i in range(1000)])) == 999
        assert len(cat.rows_info(np.arange(1000))) == 1000
    finally:
        cat.close()


def test_concurrent_readers_and_writer(catalog: Catalog) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                rows = catalog.live_rows()
                # A reader sees a committed prefix: rows are contiguous from 0.
                assert rows.size == 0 or rows[-1] == rows.size - 1
                catalog.contains(["x0", "x5"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for batch in range(50):
        ids = [f"x{batch * 10 + i}" for i in range(10)]
        catalog.upsert(ids, _meta([None] * 10), batch * 10)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert catalog.counts().live == 500


def test_ids_and_metadata_matches_rows_info(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    try:
        cat.upsert(["a", "b", "c"], ['{"k": 1}', None, '{"k": [2]}'], 0)
        cat.delete("b")  # tombstoned rows are still described
        lean = cat.ids_and_metadata(np.array([2, 0, 1, 2, 99]))
        full = cat.rows_info([0, 1, 2, 99])
        assert lean == {r: (e.id, e.metadata) for r, e in full.items()}
        assert sorted(lean) == [0, 1, 2]
    finally:
        cat.close()
