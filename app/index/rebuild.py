"""Offline tools over a FAISS store directory: `open_store` for scripts and `rebuild_store`,
which copies the live items into a new directory (reclaiming tombstoned rows)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from app.config import FaissStoreSettings
from app.errors import StoreCorrupt
from app.index.catalog import Catalog
from app.index.faiss_store import FaissStore, check_identity
from app.index.ivf import BUILD_CHUNK
from app.index.snapshots import CATALOG_FILE, VECTORS_FILE, lock_directory
from app.index.vectors import DTYPE, VectorFile

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def open_store(
    directory: Path, dim: int, settings: FaissStoreSettings, model_sha256: str | None = None
) -> Iterator[FaissStore]:
    """`with open_store(...) as store:` for scripts; closes (final snapshot) on exit."""
    store = FaissStore.open(directory, dim, settings, model_sha256)
    try:
        yield store
    finally:
        store.close()


def rebuild_store(
    source: Path,
    target: Path,
    dim: int,
    settings: FaissStoreSettings,
    model_sha256: str | None = None,
) -> int:
    """Offline: copy the live items of `source` into a new store at `target`; return how many.

    Rows are renumbered densely, so the space tombstoned rows hold in `vectors.f16` (which an
    online store never gives back) is reclaimed; ids, metadata, thumbnails, created_at and the
    exact fp16 vectors are kept bit for bit. `source` must not be open elsewhere (its lock is
    taken) and is left untouched; `target` must not exist or be empty. Swap the directories
    afterwards.
    """
    source, target = Path(source), Path(target)
    if not (source / CATALOG_FILE).is_file():
        raise StoreCorrupt(f"{source}: no {CATALOG_FILE}; not a store directory")
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target}: rebuild target must be a new or empty directory")
    lock_fd = lock_directory(source)
    try:
        catalog = Catalog.open(source / CATALOG_FILE)
        try:
            check_identity(source, catalog, dim, model_sha256)
            vectors = VectorFile.open(source / VECTORS_FILE, dim, catalog.next_row)
            try:
                with open_store(target, dim, settings, model_sha256) as out:
                    rows = catalog.live_rows()
                    for start in range(0, rows.size, BUILD_CHUNK):
                        chunk = rows[start : start + BUILD_CHUNK]
                        info = catalog.rows_info(chunk)
                        entries = [info[int(r)] for r in chunk]
                        out._append(
                            [e.id for e in entries],
                            vectors.gather(chunk).astype(DTYPE),  # fp16 -> fp32 -> fp16: exact
                            [
                                None if e.metadata is None else json.dumps(e.metadata)
                                for e in entries
                            ],
                            thumbnails=[catalog.thumbnail(e.id) for e in entries],
                            created_at=[e.created_at for e in entries],
                        )
                    out.wait_for_training()
                    copied = len(out)
            finally:
                vectors.close()
        finally:
            catalog.close()
    finally:
        os.close(lock_fd)
    logger.info("rebuilt %s into %s: %d live items", source, target, copied)
    return copied
