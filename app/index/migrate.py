"""Copy the live items of a FAISS store directory into a Milvus collection, resumably.

Ids, metadata, thumbnails, created_at and the exact fp16 vectors are copied; the collection
records the same model sha256 and dim as the source catalog, so the service refuses it with
another model exactly as it refuses the FAISS store. The source is opened under its owner
lock (stop the service on it first) and is never modified.

Resuming: after every committed batch, the last copied vector row is written (atomically) to
a small JSON state file; a rerun starts after it. Upserts are idempotent, so a batch
interrupted between Milvus's acknowledgement and the state write is simply copied again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.artifacts import write_json_atomic
from app.config import IndexSettings, StoreSettings
from app.errors import StoreCorrupt
from app.index.catalog import Catalog
from app.index.milvus_store import MilvusStore
from app.index.snapshots import CATALOG_FILE, VECTORS_FILE, lock_directory
from app.index.vectors import VectorFile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyReport:
    source_live: int
    copied_now: int
    skipped_as_done: int
    collection_count: int
    seconds: float


def copy_faiss_to_milvus(
    source: Path,
    settings: StoreSettings,
    state_file: Path,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy every live item of the FAISS store in `source` into `settings`' collection.

    `progress(n)` is called with the number of items copied by each batch.
    """
    source = Path(source)
    if not (source / CATALOG_FILE).is_file():
        raise StoreCorrupt(f"{source}: no {CATALOG_FILE}; not a FAISS store directory")
    t0 = time.perf_counter()
    lock_fd = lock_directory(source)
    try:
        catalog = Catalog.open(source / CATALOG_FILE)
        try:
            dim_text = catalog.get_meta("dim")
            if dim_text is None:
                raise StoreCorrupt(f"{source}: the catalog records no dim (empty store?)")
            dim, sha = int(dim_text), catalog.get_meta("model_sha256")
            vectors = VectorFile.open(source / VECTORS_FILE, dim, catalog.next_row)
            try:
                target = MilvusStore.open(settings, dim, IndexSettings(), model_sha256=sha)
                try:
                    report = _copy_rows(catalog, vectors, target, state_file, batch, progress)
                finally:
                    target.close()
            finally:
                vectors.close()
        finally:
            catalog.close()
    finally:
        os.close(lock_fd)
    return CopyReport(*report, seconds=round(time.perf_counter() - t0, 2))


def _read_state(state_file: Path, collection: str) -> int:
    """Rows below the returned one are copied already (0 = start from the beginning)."""
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    if state.get("collection") != collection:
        raise ValueError(
            f"{state_file} records a copy into {state.get('collection')!r}, not {collection!r}; "
            "pass another --state-file"
        )
    return int(state["next_row"])


def _copy_rows(
    catalog: Catalog,
    vectors: VectorFile,
    target: MilvusStore,
    state_file: Path,
    batch: int,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, int, int]:
    collection = target.settings.milvus_collection
    start_row = _read_state(state_file, collection)
    rows = catalog.live_rows()  # int64 [n] sorted
    done = int(np.searchsorted(rows, start_row))
    if done:
        logger.info(
            "resuming after row %d: %d of %d items copied before", start_row, done, rows.size
        )
    copied = 0
    for lo in range(done, rows.size, batch):
        chunk = rows[lo : lo + batch]
        info = catalog.rows_info(chunk)
        entries = [info[int(r)] for r in chunk]
        ids = [e.id for e in entries]
        target.add(
            ids,
            vectors.gather(chunk),  # [n, D] float32, fp16-exact
            [e.metadata for e in entries],
            [catalog.thumbnail(e.id) for e in entries],
            created_at=[e.created_at for e in entries],
        )
        write_json_atomic(
            state_file, {"collection": collection, "next_row": int(chunk[-1]) + 1}
        )
        copied += len(ids)
        if progress is not None:
            progress(len(ids))
    return int(rows.size), copied, done, len(target)
