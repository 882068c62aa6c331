"""Row bitmaps and locking for the FAISS store: which vector rows are live, the index state
they describe, and the readers-writer lock that guards both.

Lock order in `FaissStore` (never the reverse): its writer mutex before `RWLock.write`; its
snapshot mutex before `RWLock.read`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivfpq"]


class RWLock:
    """Writer-preferring readers-writer lock: many searches, or one index mutation.

    Writer preference bounds a mutation's wait to the searches already running and keeps a
    stream of searches from starving writes. Not re-entrant.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


_popcount = getattr(np, "bitwise_count", None)


def bitmap_selector(bits: np.ndarray) -> Any:
    """`IDSelectorBitmap` over uint8 [ceil(n / 8)] little-endian bits (row r <-> bit r % 8 of
    byte r // 8). The numpy form of the SWIG constructor keeps a reference to `bits`."""
    return faiss.IDSelectorBitmap(bits)  # type: ignore[call-arg, arg-type]


@dataclass(frozen=True)
class LiveRows:
    """Immutable view of which rows are live: replaced, never mutated, so a search can use
    the one it picked up (and FAISS can read its bitmap) while a writer builds the next.

    bits: uint8 [ceil(rows / 8)], bit (r % 8) of byte r // 8 set iff row r is live; this is
    exactly the layout `faiss.IDSelectorBitmap` reads.
    """

    bits: np.ndarray
    rows: int
    count: int

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> LiveRows:
        bits = np.packbits(mask.astype(bool), bitorder="little")
        return cls(bits=bits, rows=int(mask.size), count=int(np.count_nonzero(mask)))

    @classmethod
    def from_rows(cls, rows: np.ndarray, total: int) -> LiveRows:
        """View over `total` rows in which exactly the int64 `rows` (unique, < total) are set."""
        bits = np.zeros((total + 7) // 8, dtype=np.uint8)
        if rows.size:
            np.bitwise_or.at(bits, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        return cls(bits=bits, rows=total, count=int(rows.size))

    def with_changes(self, rows: int, added: np.ndarray, removed: np.ndarray) -> LiveRows:
        """New view over `rows` rows with `added` (not live before) set and `removed` (live
        before) cleared."""
        bits = np.zeros((rows + 7) // 8, dtype=np.uint8)
        bits[: self.bits.size] = self.bits
        if added.size:
            np.bitwise_or.at(bits, added >> 3, (1 << (added & 7)).astype(np.uint8))
        if removed.size:
            np.bitwise_and.at(bits, removed >> 3, ~(1 << (removed & 7)).astype(np.uint8))
        return LiveRows(bits=bits, rows=rows, count=self.count + added.size - removed.size)

    def mask(self, stop: int | None = None) -> np.ndarray:
        """bool [stop]: live flags of rows [0, stop)."""
        stop = self.rows if stop is None else stop
        return np.unpackbits(self.bits, count=stop, bitorder="little").view(bool)

    def rows_between(self, start: int, stop: int) -> np.ndarray:
        """int64 sorted live rows in [start, stop)."""
        if stop <= start:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.mask(stop)[start:]).astype(np.int64) + start

    def count_below(self, stop: int) -> int:
        full, rest = divmod(min(stop, self.rows), 8)
        if _popcount is not None:
            total = int(_popcount(self.bits[:full]).sum(dtype=np.int64))
        else:  # numpy < 2.0
            total = int(np.unpackbits(self.bits[:full]).sum(dtype=np.int64))
        if rest:
            total += int(self.bits[full] & ((1 << rest) - 1)).bit_count()
        return total

    def selector(self) -> faiss.IDSelectorBitmap:
        # The FAISS wrapper keeps a reference to `bits`; the view itself is immutable.
        return bitmap_selector(self.bits)


@dataclass
class IndexState:
    """The FAISS index and what it covers. Mutated only under the exclusive index lock."""

    index: Any  # faiss.IndexIDMap (flat) or faiss.IndexIVFPQ; ids are vector rows
    kind: IndexKind
    params: dict[str, Any]
    # Every row < covered that is live is in the index; rows >= covered are not.
    covered: int
    ntrained_on: int
    # Rows in the index that are no longer live (tombstones awaiting compaction).
    dead: int


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for int arrays, without np.unique's first-call cost: in numpy 2.x its first
    call imports numpy.ma (12 ms measured), which the first search of a fresh service paid."""
    flat = np.sort(values, axis=None)
    if flat.size == 0:
        return flat
    return flat[np.concatenate(([True], flat[1:] != flat[:-1]))]
