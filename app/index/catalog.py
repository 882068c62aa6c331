"""sqlite catalog: external id <-> vector row, metadata, created_at, tombstones.

Together with `vectors.f16` this is the store's source of truth (docs/ARCHITECTURE.md 5); the
FAISS index is derived from both. Rows are never deleted or reused: a delete sets `deleted_at`
(a tombstone) and a re-add of an id tombstones its live row and inserts a new one, so row r of
the catalog always describes row r of `vectors.f16` and `max(row) + 1` is the number of vector
rows the catalog vouches for.

Durability: WAL journal with `synchronous=FULL`, so a committed transaction is fsync'd to the
WAL before `commit` returns and survives a power cut. Thread safety: one writer connection
guarded by a lock; readers borrow connections from a small pool, and WAL lets them read a
consistent snapshot while the writer commits.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.index.filters import MetadataFilter
from app.index.paging import prefix_upper_bound

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
# sqlite's default limit on bound parameters is 32766 (3.32+); stay well below it.
_IN_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    row        INTEGER PRIMARY KEY,   -- row of the vector in vectors.f16
    id         TEXT NOT NULL,         -- external id
    metadata   TEXT,                  -- JSON object or NULL
    created_at REAL NOT NULL,         -- unix time of the add
    deleted_at REAL                   -- NULL while live; set when deleted or replaced
);
-- At most one live row per id; also the index behind every lookup by id.
CREATE UNIQUE INDEX IF NOT EXISTS items_live_id ON items(id) WHERE deleted_at IS NULL;
-- JPEG thumbnail of a row's image upload, written in the add's transaction and deleted in
-- the transaction that tombstones the row (delete or replace): only live rows have one.
CREATE TABLE IF NOT EXISTS thumbnails (
    row  INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CatalogRow:
    row: int
    id: str
    metadata: dict[str, Any] | None
    created_at: float
    deleted: bool
    has_thumbnail: bool = False


@dataclass(frozen=True, slots=True)
class CatalogCounts:
    rows: int
    live: int

    @property
    def tombstones(self) -> int:
        return self.rows - self.live


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _decode_metadata(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


class Catalog:
    """Thread-safe catalog over `catalog.sqlite`. Open with `Catalog.open(path)`."""

    def __init__(self, path: Path, writer: sqlite3.Connection) -> None:
        self.path = path
        self._writer = writer
        # Re-entrant: upsert holds it across its transaction and the next_row update.
        self._write_lock = threading.RLock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        row = writer.execute("SELECT COALESCE(MAX(row), -1) + 1 FROM items").fetchone()
        # Next row to allocate; only the writer changes it, after a commit.
        self._next_row: int = int(row[0])

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: Path) -> Catalog:
        conn = cls._connect(path)
        with conn:
            conn.executescript(_SCHEMA)
        current = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if current is None:
            with conn:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
        return cls(path, conn)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are opened explicitly with
        # BEGIN IMMEDIATE, so a reader's SELECT never holds a transaction open by accident.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsync'd at every commit, so an acknowledged add survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Borrow a reader connection (WAL: readers never block the writer)."""
        if self._closed:
            raise RuntimeError(f"{self.path}: catalog is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect(self.path)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection; committed (and fsync'd) on exit."""
        with self._write_lock:
            if self._closed:
                raise RuntimeError(f"{self.path}: catalog is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ writes
    @property
    def next_row(self) -> int:
        """Rows [0, next_row) exist in the catalog (live or tombstoned)."""
        return self._next_row

    def upsert(
        self,
        ids: Sequence[str],
        metadata_json: Sequence[str | None],
        first_row: int,
        created_at: float | Sequence[float] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> list[tuple[int, int]]:
        """Insert ids at rows first_row.. in ONE transaction; return (old_row, new_row) pairs.

        Live rows that already carry one of `ids` become tombstones in the same transaction
        (their thumbnails are deleted with them), so a crash leaves either the old or the new
        version live, never both or neither. `thumbnails` (one JPEG or None per id) commit in
        the same transaction. `ids` must be unique within the batch (the store checks). Pairs
        are sorted by new row. `created_at`: one time for the batch (default now) or one per
        id (offline rebuilds).
        """
        if len(ids) != len(metadata_json):
            raise ValueError("ids and metadata_json differ in length")
        if thumbnails is not None and len(thumbnails) != len(ids):
            raise ValueError("ids and thumbnails differ in length")
        now = time.time()
        if created_at is None or isinstance(created_at, int | float):
            times = [now if created_at is None else float(created_at)] * len(ids)
        else:
            times = [float(t) for t in created_at]
            if len(times) != len(ids):
                raise ValueError("ids and created_at differ in length")
        new_row = {item_id: first_row + i for i, item_id in enumerate(ids)}
        replaced: list[tuple[int, int]] = []
        with self._write_lock:  # held across the commit and the next_row update
            if first_row != self._next_row:
                raise ValueError(
                    f"rows must be appended: expected row {self._next_row}, got {first_row}"
                )
            with self._transaction() as conn:
                for chunk in _chunks(ids):
                    marks = ",".join("?" * len(chunk))
                    replaced.extend(
                        (int(row), new_row[item_id])
                        for row, item_id in conn.execute(
                            "SELECT row, id FROM items "
                            f"WHERE deleted_at IS NULL AND id IN ({marks})",
                            tuple(chunk),
                        )
                    )
                if replaced:
                    conn.executemany(
                        "UPDATE items SET deleted_at = ? WHERE row = ?",
                        [(now, old) for old, _ in replaced],
                    )
                    conn.executemany(
                        "DELETE FROM thumbnails WHERE row = ?", [(old,) for old, _ in replaced]
                    )
                conn.executemany(
                    "INSERT INTO items(row, id, metadata, created_at) VALUES (?, ?, ?, ?)",
                    [
                        (first_row + i, item_id, meta, t)
                        for i, (item_id, meta, t) in enumerate(
                            zip(ids, metadata_json, times, strict=True)
                        )
                    ],
                )
                if thumbnails is not None:
                    conn.executemany(
                        "INSERT INTO thumbnails(row, data) VALUES (?, ?)",
                        [
                            (first_row + i, sqlite3.Binary(data))
                            for i, data in enumerate(thumbnails)
                            if data is not None
                        ],
                    )
            self._next_row = first_row + len(ids)
        replaced.sort(key=lambda pair: pair[1])
        return replaced

    def delete(self, item_id: str, deleted_at: float | None = None) -> int | None:
        """Tombstone the live row of `item_id`; return it, or None when the id is unknown."""
        now = time.time() if deleted_at is None else deleted_at
        with self._transaction() as conn:
            found = conn.execute(
                "UPDATE items SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL RETURNING row",
                (now, item_id),
            ).fetchone()
            if found is not None:
                conn.execute("DELETE FROM thumbnails WHERE row = ?", (int(found[0]),))
        return None if found is None else int(found[0])

    # ------------------------------------------------------------------ reads
    def lookup(self, item_id: str) -> CatalogRow | None:
        """The live row of an id, or None."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT row, id, metadata, created_at, "
                "EXISTS (SELECT 1 FROM thumbnails t WHERE t.row = items.row) FROM items "
                "WHERE id = ? AND deleted_at IS NULL",
                (item_id,),
            ).fetchone()
        if found is None:
            return None
        return CatalogRow(
            int(found[0]), found[1], _decode_metadata(found[2]), found[3], False, bool(found[4])
        )

    def thumbnail(self, item_id: str) -> bytes | None:
        """The thumbnail of the live row of `item_id`, or None."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT t.data FROM items JOIN thumbnails t ON t.row = items.row "
                "WHERE items.id = ? AND items.deleted_at IS NULL",
                (item_id,),
            ).fetchone()
        return None if found is None else bytes(found[0])

    def list_live(
        self, limit: int, after: str | None = None, id_prefix: str | None = None
    ) -> tuple[list[CatalogRow], int]:
        """Up to `limit` live rows with id > `after` (and starting with `id_prefix`) in
        ascending id order (sqlite's BINARY collation: UTF-8 bytes = code-point order), and
        the number of live ids with that prefix. Keyset paging over the live-id index, so a
        page never skips or repeats an id that stayed live while the client paged."""
        where, args = ["deleted_at IS NULL"], []
        if id_prefix:
            where.append("id >= ? AND substr(id, 1, ?) = ?")
            args += [id_prefix, len(id_prefix), id_prefix]
            upper = prefix_upper_bound(id_prefix)
            if upper is not None:  # bounds the index range scan; substr() stays the truth
                where.append("id < ?")
                args.append(upper)
        condition = " AND ".join(where)
        page_where = condition + (" AND id > ?" if after is not None else "")
        page_args = [*args, after] if after is not None else list(args)
        with self._read() as conn:
            (total,) = conn.execute(
                f"SELECT COUNT(*) FROM items WHERE {condition}", tuple(args)
            ).fetchone()
            found = conn.execute(
                "SELECT row, id, metadata, created_at, "
                "EXISTS (SELECT 1 FROM thumbnails t WHERE t.row = items.row) "
                f"FROM items WHERE {page_where} ORDER BY id LIMIT ?",
                (*page_args, limit),
            ).fetchall()
        rows = [
            CatalogRow(int(r[0]), r[1], _decode_metadata(r[2]), r[3], False, bool(r[4]))
            for r in found
        ]
        return rows, int(total)

    def matching_live_rows(self, flt: MetadataFilter) -> np.ndarray:
        """int64 [n] sorted live rows whose metadata match `flt` (the SQL form of
        `MetadataFilter.matches`; json_type tells booleans, numbers and strings apart)."""
        clauses: list[str] = []
        args: list[Any] = []
        for cond in flt.conditions:
            # Keys match [A-Za-z0-9_-]{1,64} (filters.KEY_PATTERN): safe inside a quoted path.
            path = f'$."{cond.key}"'
            options: list[str] = []
            for value in cond.values:
                if isinstance(value, bool):
                    options.append("json_type(metadata, ?) = ?")
                    args += [path, "true" if value else "false"]
                elif isinstance(value, str):
                    options.append(
                        "(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)"
                    )
                    args += [path, path, value]
                else:  # numbers compare by value as doubles, as the reference does
                    options.append(
                        "(json_type(metadata, ?) IN ('integer', 'real') "
                        "AND CAST(json_extract(metadata, ?) AS REAL) = ?)"
                    )
                    args += [path, path, float(value)]
            clauses.append("(" + " OR ".join(options) + ")")
        sql = (
            "SELECT row FROM items WHERE deleted_at IS NULL AND metadata IS NOT NULL AND "
            + " AND ".join(clauses)
            + " ORDER BY row"
        )
        with self._read() as conn:
            rows = conn.execute(sql, tuple(args)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def rows_info(self, rows: Sequence[int] | np.ndarray) -> dict[int, CatalogRow]:
        """id, metadata and tombstone flag of many rows (live or not) in a few queries."""
        unique = sorted({int(r) for r in rows})
        out: dict[int, CatalogRow] = {}
        with self._read() as conn:
            for chunk in _chunks(unique):
                marks = ",".join("?" * len(chunk))
                for row, item_id, meta, created, deleted in conn.execute(
                    "SELECT row, id, metadata, created_at, deleted_at IS NOT NULL FROM items "
                    f"WHERE row IN ({marks})",
                    tuple(chunk),
                ):
                    out[int(row)] = CatalogRow(
                        int(row), item_id, _decode_metadata(meta), created, bool(deleted)
                    )
        return out

    def ids_and_metadata(
        self, rows: Sequence[int] | np.ndarray
    ) -> dict[int, tuple[str, dict[str, Any] | None]]:
        """(id, metadata) of many rows, live or not: the search path's lean `rows_info`.

        Two columns and plain tuples instead of CatalogRow, and every metadata text decoded by
        one json.loads of a JSON array (per-call overhead dominated 10,000 small loads: 43 of
        77 ms in a 1000-query batch at 1M). The texts are the catalog's own json.dumps output;
        should one ever fail to parse, each is decoded alone so the error names it.
        """
        unique = sorted({int(r) for r in rows})
        found_rows: list[int] = []
        found_ids: list[str] = []
        texts: list[str] = []
        with self._read() as conn:
            for chunk in _chunks(unique):
                marks = ",".join("?" * len(chunk))
                for row, item_id, meta in conn.execute(
                    f"SELECT row, id, metadata FROM items WHERE row IN ({marks})", chunk
                ):
                    found_rows.append(row)
                    found_ids.append(item_id)
                    texts.append("null" if meta is None else meta)
        try:
            metas = json.loads("[" + ",".join(texts) + "]") if texts else []
            if len(metas) != len(texts):  # a text holding "a, b" would shift the rest
                raise ValueError("metadata texts are not single JSON values")
        except ValueError:
            metas = [json.loads(text) for text in texts]
        return {
            row: (item_id, meta)
            for row, item_id, meta in zip(found_rows, found_ids, metas, strict=True)
        }

    def contains(self, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that is live."""
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        with self._read() as conn:
            for chunk in _chunks(unique):
                marks = ",".join("?" * len(chunk))
                found.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM items WHERE deleted_at IS NULL AND id IN ({marks})",
                        tuple(chunk),
                    )
                )
        return found

    def live_rows(self, start: int = 0) -> np.ndarray:
        """int64 [n] sorted rows >= start that are live."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT row FROM items WHERE deleted_at IS NULL AND row >= ? ORDER BY row",
                (start,),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def live_mask(self) -> np.ndarray:
        """bool [next_row]: True where the row is live."""
        mask = np.zeros(self._next_row, dtype=bool)
        rows = self.live_rows()
        rows = rows[rows < mask.size]
        mask[rows] = True
        return mask

    def counts(self) -> CatalogCounts:
        with self._read() as conn:
            total, live = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(deleted_at IS NULL), 0) FROM items"
            ).fetchone()
        return CatalogCounts(rows=int(total), live=int(live))

    def max_row(self) -> int:
        """Largest row in the catalog, -1 when empty."""
        return self._next_row - 1
