"""The durable half of an add, shared by the live store (faiss_store.py) and the offline bulk
writer (bulk.py): vector rows first (fsync'd), then ONE catalog transaction that points the ids
at them; a failed transaction truncates the rows again, so the two files never disagree."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.errors import StoreCorrupt
from app.index.catalog import Catalog
from app.index.vectors import VectorFile


def append_rows(
    directory: Path,
    vectors: VectorFile,
    catalog: Catalog,
    ids: Sequence[str],
    x16: np.ndarray,
    meta_json: Sequence[str | None],
    created_at: Sequence[float] | None = None,
    thumbnails: Sequence[bytes | None] | None = None,
) -> tuple[int, list[tuple[int, int]]]:
    """Store x16 [N, D] float16 under unique `ids` at the next rows; durable on return.
    Returns the first new row and the (old_row, new_row) pairs of ids that were replaced.
    The caller holds the store's single writer."""
    first = catalog.next_row
    if vectors.rows != first:
        raise StoreCorrupt(f"{directory}: {vectors.rows} vector rows but catalog expects {first}")
    vectors.append(x16)  # fsync'd before the catalog may point at it
    try:
        pairs = catalog.upsert(list(ids), list(meta_json), first, created_at, thumbnails)
    except BaseException:
        vectors.truncate(first)
        raise
    return first, pairs
