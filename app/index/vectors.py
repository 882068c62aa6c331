"""Exact vectors: `vectors.f16`, raw little-endian float16, row-addressed, append-only.

Row r of dimension D lives at byte offset r * D * 2. The file keeps the exact (fp16-rounded)
descriptors that IVF-PQ throws away: search re-scores its candidates from here and SuperGlobal
re-ranks the exact top-M (docs/ARCHITECTURE.md 5). Half precision halves the disk and page cache
of float32 at a re-scoring error below 1e-3 on unit vectors.

Durability protocol with the catalog: the writer appends rows here, flushes and fsyncs, and
only then commits the catalog rows that point at them. A crash in between leaves orphan rows
beyond the catalog's last row; `VectorFile.open` truncates them. A file SHORTER than the catalog
needs cannot happen under that protocol and means lost data: `StoreCorrupt`.

Reads go through a read-only memory map that is re-mapped lazily when a read asks for a row
beyond the mapped length, so appends never pay for a re-map.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from app.errors import StoreCorrupt

logger = logging.getLogger(__name__)

DTYPE = np.dtype("<f2")


class VectorFile:
    """Append-only float16 row file. Thread-safe: appends are serialised by the store's writer
    lock (and our own), reads may run concurrently with an append."""

    def __init__(self, path: Path, dim: int, handle: int, rows: int) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * DTYPE.itemsize
        self._fd = handle
        self._rows = rows
        self._lock = threading.Lock()
        # [mapped_rows, D] float16 read-only view; replaced (never mutated) on re-map so a
        # concurrent reader keeps a valid reference to the old one.
        self._map: np.ndarray | None = None

    @classmethod
    def open(cls, path: Path, dim: int, expected_rows: int) -> VectorFile:
        """Open (creating if needed) and reconcile with the catalog's row count.

        Rows beyond `expected_rows` are orphans of a crash between the vector fsync and the
        catalog commit and are truncated away; fewer rows than expected -> StoreCorrupt.
        """
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            row_bytes = dim * DTYPE.itemsize
            need = expected_rows * row_bytes
            if size < need:
                raise StoreCorrupt(
                    f"{path}: holds {size // row_bytes} complete rows of dim {dim} "
                    f"({size} bytes) but the catalog references {expected_rows} rows "
                    f"({need} bytes); vectors were lost. Restore the store from a backup or "
                    "re-index the collection."
                )
            if size > need:
                logger.warning(
                    "%s: truncating %d bytes (%.2f rows) beyond the catalog's %d rows: "
                    "orphans of an add interrupted before its catalog commit",
                    path,
                    size - need,
                    (size - need) / row_bytes,
                    expected_rows,
                )
                os.ftruncate(fd, need)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, dim, fd, expected_rows)

    @property
    def rows(self) -> int:
        return self._rows

    def append(self, vectors: np.ndarray) -> int:
        """Write [n, D] rows at the end, fsync, return the first new row.

        Durable when this returns; the caller commits the catalog afterwards.
        """
        block = np.ascontiguousarray(vectors, dtype=DTYPE)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"expected [n, {self.dim}] vectors, got shape {block.shape}")
        with self._lock:
            first = self._rows
            data = block.tobytes()
            offset = first * self.row_bytes
            written = 0
            try:
                while written < len(data):
                    written += os.pwrite(self._fd, data[written:], offset + written)
                os.fsync(self._fd)
            except OSError:
                # Disk full or I/O error: drop the partial rows so the file stays row-aligned
                # (open() would truncate them anyway; this keeps the running store clean).
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, offset)
                raise
            self._rows = first + block.shape[0]
        return first

    def truncate(self, rows: int) -> None:
        """Drop rows >= `rows` (undo an append whose catalog commit failed)."""
        with self._lock:
            if rows > self._rows:
                raise ValueError(f"cannot truncate {self._rows} rows to {rows}")
            os.ftruncate(self._fd, rows * self.row_bytes)
            os.fsync(self._fd)
            self._rows = rows
            # The old map may cover the dropped pages; touching them would SIGBUS.
            self._map = None

    def _mapped(self, need_rows: int) -> np.ndarray:
        current = self._map
        if current is not None and current.shape[0] >= need_rows:
            return current
        with self._lock:
            current = self._map
            if current is None or current.shape[0] < need_rows:
                rows = self._rows
                if rows < need_rows:
                    raise IndexError(f"{self.path}: row {need_rows - 1} >= {rows} rows")
                # A plain ndarray view of the map (it keeps the mapping alive): indexing a
                # np.memmap goes through its Python-level __getitem__ on every call.
                current = np.memmap(
                    self.path, dtype=DTYPE, mode="r", shape=(rows, self.dim)
                ).view(np.ndarray)
                self._map = current
        return current

    def gather(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """float32 [n, D] copies of the given rows (any order, repeats allowed)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if idx.min() < 0:
            raise IndexError(f"{self.path}: negative row {int(idx.min())}")
        mapped = self._mapped(int(idx.max()) + 1)
        return mapped[idx].astype(np.float32)

    def gather_block(self, rows: np.ndarray) -> np.ndarray:
        """float32 [*rows.shape, D] copies of the rows in an index array of any shape (e.g.
        [Q, fetch] candidate lists); one fp16 gather and one conversion, no intermediate."""
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size == 0:
            return np.zeros((*idx.shape, self.dim), dtype=np.float32)
        if idx.min() < 0:
            raise IndexError(f"{self.path}: negative row {int(idx.min())}")
        mapped = self._mapped(int(idx.max()) + 1)
        return mapped[idx].astype(np.float32)

    def close(self) -> None:
        with self._lock:
            self._map = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
