"""Bulk loading of a FAISS store directory: the durable write path without a live index.

`FaissStore.add` publishes every batch to the in-memory index, which below the IVF threshold
is `IDMap,Flat`: float32 copies of every vector (1M x 1280 x 4 B = 4.9 GiB) held only to be
thrown away when IVF-PQ is trained. A bulk load of a collection whose size is known up front
does not need that. `BulkWriter` writes exactly what `FaissStore.add` writes, under the same
protocol (fp16 rows appended and fsync'd to `vectors.f16`, then one catalog transaction per
batch: ids, metadata, thumbnails, tombstones of replaced ids), and never builds an index. The
next `FaissStore.open` then finds the catalog ahead of the last snapshot and builds the index
once from the rows (`app/index/snapshots.py: recover`): IVF-PQ trained on a sample of all of
them when there are enough, else flat.

A store directory has one owner: the writer takes the same flock a store takes, so it refuses
to run while a service has the directory open (StoreLocked), and vice versa.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import StoreCorrupt
from app.index.catalog import Catalog
from app.index.durable_rows import append_rows
from app.index.faiss_store import check_identity
from app.index.snapshots import (
    CATALOG_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    lock_directory,
    remove_stale_temp_files,
)
from app.index.store import InvalidVectors
from app.index.validation import (
    as_matrix,
    check_ids,
    check_thumbnails,
    metadata_json,
    to_float16,
)
from app.index.vectors import VectorFile

logger = logging.getLogger(__name__)


class BulkWriter:
    """Durable appends to a closed FAISS store directory; open with `BulkWriter.open`."""

    def __init__(
        self, directory: Path, dim: int, catalog: Catalog, vectors: VectorFile, lock_fd: int
    ) -> None:
        self.directory = directory
        self.dim = dim
        self._catalog = catalog
        self._vectors = vectors
        self._lock_fd = lock_fd
        self.appended = 0
        self.replaced = 0
        self._rows_at_open = catalog.next_row

    @classmethod
    def open(cls, directory: Path, dim: int, model_sha256: str | None = None) -> BulkWriter:
        """Lock `directory` (created if needed), reconcile the vector file with the catalog as
        `FaissStore.open` does, and check the store's dim and model (ArtifactMismatch)."""
        directory = Path(directory)
        lock_fd = lock_directory(directory)
        catalog: Catalog | None = None
        try:
            remove_stale_temp_files(directory)
            vectors_path = directory / VECTORS_FILE
            if (
                not (directory / CATALOG_FILE).exists()
                and vectors_path.exists()
                and vectors_path.stat().st_size
            ):
                raise StoreCorrupt(f"{directory}: {VECTORS_FILE} without {CATALOG_FILE}")
            catalog = Catalog.open(directory / CATALOG_FILE)
            check_identity(directory, catalog, dim, model_sha256)
            vectors = VectorFile.open(vectors_path, dim, catalog.next_row)
        except BaseException:
            if catalog is not None:
                catalog.close()
            os.close(lock_fd)
            raise
        return cls(directory, dim, catalog, vectors, lock_fd)

    def contains(self, ids: Sequence[str]) -> set[str]:
        return self._catalog.contains(list(ids))

    def append(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
        created_at: Sequence[float] | None = None,
    ) -> int:
        """Store [N, D] unit vectors under unique `ids`; durable on return. Re-adding an id
        replaces it, as `FaissStore.add` does. Returns N."""
        ids = check_ids(ids)
        if not ids:
            return 0
        x16 = to_float16(as_matrix(vectors, self.dim, "vectors"))  # [N, D] float16
        if x16.shape[0] != len(ids):
            raise InvalidVectors(f"got {x16.shape[0]} vectors for {len(ids)} ids")
        meta_json = metadata_json(metadata, len(ids))
        thumbs = check_thumbnails(thumbnails, len(ids))
        _, pairs = append_rows(
            self.directory, self._vectors, self._catalog, ids, x16, meta_json, created_at, thumbs
        )
        self.appended += len(ids)
        self.replaced += len(pairs)
        return len(ids)

    def close(self) -> None:
        """Release the directory. When this load at least doubled the rows, the index snapshot
        is retired (manifest removed; the index is a derived cache), so the next open trains
        the index over all rows instead of replaying them into an index sized for the old
        collection (a flat one would hold every new vector as float32)."""
        try:
            manifest = self.directory / MANIFEST_FILE
            if self.appended and self.appended >= self._rows_at_open and manifest.exists():
                manifest.unlink()
                logger.info(
                    "%s: %d rows appended to %d; index snapshot retired, the next open builds "
                    "the index from all rows",
                    self.directory,
                    self.appended,
                    self._rows_at_open,
                )
        finally:
            self._vectors.close()
            self._catalog.close()
            os.close(self._lock_fd)

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
