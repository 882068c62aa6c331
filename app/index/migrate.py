"""Copy the live items of one `VectorStore` into another, resumably, through the protocol
only: FAISS -> Milvus, Milvus -> FAISS, FAISS -> FAISS, Milvus -> Milvus.

Ids, metadata, thumbnails, created_at and the exact (fp16-rounded) vectors are copied; the
target is opened with the source's dim and model sha256, so the service refuses it with
another model exactly as it refuses the source. The source is opened as the service opens it
(a FAISS store under its owner lock: stop the service on it first) and only read.

Order and resuming: items are read in the source's id order (`list_items` pages) and written
in batches; after every acknowledged batch the source's cursor after it is written
(atomically) to a small JSON state file, and a rerun continues from there. Re-adding an id
replaces it, so a batch interrupted between the target's acknowledgement and the state write
is simply copied again. Items the source gains or loses during a copy may or may not be
copied (stop writers first for an exact copy).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.artifacts import write_json_atomic
from app.config import Settings
from app.errors import StoreCorrupt
from app.index.factory import open_vector_store, recorded_identity
from app.index.store import VectorStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyReport:
    source_live: int
    copied_now: int
    skipped_as_done: int
    target_count: int
    seconds: float


def describe_store(settings: Settings) -> str:
    """A name for the store `settings` select: what the state file records as the target."""
    if settings.store.backend == "milvus":
        m = settings.store.milvus
        return f"milvus:{m.uri}/{m.database}/{m.collection}"
    return f"{settings.store.backend}:{settings.store_dir.resolve()}"


def copy_store(
    source: Settings,
    target: Settings,
    state_file: Path,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy every live item of the store `source` selects into the one `target` selects.

    `progress(n)` is called with the number of items copied by each batch.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if describe_store(source) == describe_store(target):
        raise ValueError(f"source and target are the same store ({describe_store(source)})")
    t0 = time.perf_counter()
    identity = recorded_identity(source)
    if identity is None:
        raise StoreCorrupt(f"{describe_store(source)}: no store there (nothing was indexed)")
    dim, sha = identity
    with _opened(source, dim, sha) as src, _opened(target, dim, sha) as dst:
        report = copy_items(src, dst, state_file, describe_store(target), batch, progress)
    return CopyReport(*report, seconds=round(time.perf_counter() - t0, 2))


@contextmanager
def _opened(settings: Settings, dim: int, sha: str | None) -> Iterator[VectorStore]:
    store = open_vector_store(settings, dim, sha)
    try:
        yield store
    finally:
        store.close()


@dataclass(frozen=True)
class _State:
    cursor: str | None  # the source's cursor after the items copied so far; None = start
    copied: int  # items copied by earlier runs
    finished: bool


def _read_state(state_file: Path, target_name: str) -> _State:
    if not state_file.exists():
        return _State(None, 0, False)
    state = json.loads(state_file.read_text())
    if "target" not in state:
        # Written by the FAISS -> Milvus copy of the previous release (a vector row, not a
        # cursor): copying again from the start is safe, re-adding an id replaces it.
        logger.warning("%s is from an older copy tool; copying from the start", state_file)
        return _State(None, 0, False)
    if state["target"] != target_name:
        raise ValueError(
            f"{state_file} records a copy into {state['target']!r}, not {target_name!r}; "
            "pass another --state-file"
        )
    return _State(state.get("cursor"), int(state.get("copied", 0)), bool(state.get("finished")))


def copy_items(
    source: VectorStore,
    target: VectorStore,
    state_file: Path,
    target_name: str,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, int, int]:
    """(source live, copied now, skipped as done, target count) for an open pair of stores."""
    state = _read_state(state_file, target_name)
    done, cursor = state.copied, state.cursor
    if done:
        logger.info("resuming: %d items were copied before", done)
    copied = 0
    while not state.finished:
        page = source.list_items(batch, cursor)
        items = source.get_many([item.id for item in page.items], with_vectors=True)
        if items:
            vectors = [item.vector for item in items if item.vector is not None]
            if len(vectors) != len(items):
                raise StoreCorrupt("the source returned an item without its vector")
            target.add(
                [item.id for item in items],
                np.stack(vectors),  # [n, D] float32, fp16-exact
                [item.metadata for item in items],
                [source.thumbnail(item.id) if item.has_thumbnail else None for item in items],
                created_at=[item.created_at for item in items],
            )
            copied += len(items)
        cursor = page.next_cursor
        finished = cursor is None
        write_json_atomic(
            state_file,
            {
                "target": target_name,
                "cursor": cursor,
                "copied": done + copied,
                "finished": finished,
            },
        )
        if progress is not None and items:
            progress(len(items))
        if finished:
            break
    return len(source), copied, done, len(target)
