"""The FAISS store directory on disk: its owner lock, index snapshots and crash recovery.

Snapshots: `index-<gen>.faiss` is written to a temp file in the same folder, fsync'd,
`os.replace`d and the directory fsync'd; `manifest.json` (written last, atomically) names the
good generation and the vector rows it covers. Older generations are deleted afterwards.

Recovery rules (`recover`):
    * stale `.*.tmp` files (a crash mid-write) are deleted with a warning;
    * the manifest's snapshot is loaded when the manifest parses, the file exists, its size
      and sha256 match and FAISS reads it; rows >= rows_covered that are live in the catalog
      are replayed into it;
    * anything else (unreadable manifest, missing generation, truncated/corrupt file, a
      snapshot covering rows the catalog does not have) -> warning, the bad file renamed
      `<name>.corrupt-<UTC timestamp>`, index rebuilt from catalog + vectors (flat or IVF-PQ
      by size, synchronously), and a fresh snapshot requested.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import ValidationError

from app.artifacts import StoreManifest, fsync_dir, write_json_atomic
from app.config import FaissStoreSettings
from app.errors import SimSearchError
from app.index.catalog import Catalog
from app.index.ivf import add_rows, build_from_rows
from app.index.live_rows import IndexKind, IndexState, LiveRows
from app.index.vectors import VectorFile

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.f16"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "store.lock"


class StoreLocked(SimSearchError):
    """Another process (or another open store object) owns this store directory."""


def lock_directory(directory: Path) -> int:
    """Create `directory` if needed and take its exclusive flock; return the lock fd."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(lock_fd)
        raise StoreLocked(
            f"{directory}: store is open in another process or object ({exc}); a store "
            "directory has exactly one owner (run one service worker per store)"
        ) from exc
    return lock_fd


def remove_stale_temp_files(directory: Path) -> None:
    for tmp in sorted(directory.glob(".*.tmp")):
        logger.warning("%s: removing stale temp file of an interrupted write", tmp)
        tmp.unlink(missing_ok=True)


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def quarantine(path: Path, why: str) -> None:
    """Move a bad file aside (kept for post-mortems, never read again)."""
    target = path.with_name(f"{path.name}.corrupt-{_utc_stamp()}")
    suffix = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{_utc_stamp()}-{suffix}")
        suffix += 1
    try:
        os.replace(path, target)
        fsync_dir(path.parent)
        logger.warning("%s: %s; moved aside to %s", path, why, target.name)
    except OSError as exc:
        logger.warning("%s: %s; could not move it aside (%s)", path, why, exc)


def _generation_of(path: Path) -> int | None:
    stem = path.name.removeprefix("index-").removesuffix(".faiss")
    return int(stem) if stem.isdigit() else None


@dataclass(frozen=True)
class CapturedIndex:
    """A serialised index and what it covers, taken under the shared index lock."""

    blob: np.ndarray  # uint8 [bytes]
    kind: IndexKind
    params: dict[str, Any]
    covered: int
    ntotal: int
    ntrained_on: int
    key: tuple[int, int, int]


class Snapshots:
    """Generation bookkeeping, snapshot writes and snapshot loads of one store directory.

    `mutex` serialises snapshots; callers hold it around `capture` + `write`.
    """

    def __init__(self, directory: Path, dim: int, model_sha256: str | None) -> None:
        self.directory = directory
        self.dim = dim
        self.model_sha256 = model_sha256
        self.mutex = threading.Lock()
        self.generation = 0  # last durable generation
        self.next_generation = 1
        self.rows_covered = 0  # rows_covered of the last snapshot
        self.key: tuple[int, int, int] | None = None  # what the last snapshot holds

    @staticmethod
    def key_of(state: IndexState) -> tuple[int, int, int]:
        return (id(state.index), state.covered, int(state.index.ntotal))

    def is_current(self, state: IndexState) -> bool:
        return self.key_of(state) == self.key

    @classmethod
    def capture(cls, state: IndexState) -> CapturedIndex:
        """Serialise under the caller's shared lock: one memcpy-like pass; writes wait for it,
        searches do not."""
        return CapturedIndex(
            blob=faiss.serialize_index(state.index),
            kind=state.kind,
            params=dict(state.params),
            covered=state.covered,
            ntotal=int(state.index.ntotal),
            ntrained_on=state.ntrained_on,
            key=cls.key_of(state),
        )

    def write(self, captured: CapturedIndex) -> int:
        """temp file -> fsync -> os.replace -> fsync(dir), manifest last; returns the
        generation. Call with `mutex` held."""
        generation = self.next_generation
        self.next_generation += 1
        name = f"index-{generation}.faiss"
        tmp = self.directory / f".{name}.tmp"
        blob = captured.blob
        with tmp.open("wb") as handle:
            handle.write(blob.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / name)
        fsync_dir(self.directory)
        params = dict(captured.params)
        params.update(
            ntotal=captured.ntotal,
            file_bytes=int(blob.size),
            file_sha256=hashlib.sha256(blob.data).hexdigest(),
        )
        manifest = StoreManifest(
            generation=generation,
            dim=self.dim,
            index_type=captured.kind,
            index_file=name,
            index_params=params,
            rows_covered=captured.covered,
            ntrained_on=captured.ntrained_on,
            model_sha256=self.model_sha256,
        )
        write_json_atomic(self.directory / MANIFEST_FILE, manifest.model_dump(mode="json"))
        self.generation = generation
        self.rows_covered = captured.covered
        self.key = captured.key
        self.remove_unreferenced(keep=generation)
        logger.info(
            "%s: snapshot generation %d (%s, %d vectors, rows_covered %d, %.1f MiB)",
            self.directory,
            generation,
            captured.kind,
            captured.ntotal,
            captured.covered,
            blob.size / 2**20,
        )
        return generation

    def remove_unreferenced(self, keep: int) -> None:
        for path in self.directory.glob("index-*.faiss"):
            if _generation_of(path) != keep:
                logger.info("%s: removing unreferenced snapshot %s", self.directory, path.name)
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ loading
    def read_manifest(self, catalog_rows: int) -> StoreManifest | None:
        path = self.directory / MANIFEST_FILE
        if not path.exists():
            if catalog_rows:
                logger.warning(
                    "%s: no manifest (a bulk load, or a crash before the first snapshot); "
                    "building the index from the catalog",
                    path,
                )
            return None
        try:
            manifest = StoreManifest.model_validate_json(path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            quarantine(path, f"unreadable manifest ({str(exc).splitlines()[0]})")
            return None
        if manifest.dim != self.dim:
            quarantine(path, f"manifest dim {manifest.dim} != catalog dim {self.dim}")
            return None
        if (
            manifest.model_sha256 is not None
            and self.model_sha256 is not None
            and manifest.model_sha256 != self.model_sha256
        ):
            quarantine(path, "manifest names another model than the catalog")
            return None
        return manifest

    def load(self, manifest: StoreManifest, catalog_rows: int) -> IndexState | None:
        """The snapshot the manifest names, verified; None (file quarantined) when bad."""
        if manifest.index_file is None:
            logger.warning("%s: manifest names no index file; rebuilding", self.directory)
            return None
        path = self.directory / manifest.index_file
        if not path.is_file():
            logger.warning(
                "%s: manifest points at generation %d but %s is missing; rebuilding the index "
                "from the catalog",
                self.directory,
                manifest.generation,
                path.name,
            )
            return None
        if manifest.rows_covered > catalog_rows:
            quarantine(
                path,
                f"snapshot covers {manifest.rows_covered} rows but the catalog has only "
                f"{catalog_rows}",
            )
            return None
        params = dict(manifest.index_params)
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            quarantine(path, f"unreadable index file ({exc})")
            return None
        want_bytes = params.pop("file_bytes", None)
        want_sha = params.pop("file_sha256", None)
        params.pop("ntotal", None)
        if want_bytes is not None and data.size != want_bytes:
            quarantine(
                path, f"truncated or extended index file ({data.size} != {want_bytes} bytes)"
            )
            return None
        if want_sha is not None and hashlib.sha256(data.data).hexdigest() != want_sha:
            quarantine(path, "index file checksum mismatch")
            return None
        try:
            index = faiss.deserialize_index(data)
        except (RuntimeError, MemoryError, ValueError) as exc:
            quarantine(path, f"FAISS cannot read the index file ({str(exc).splitlines()[0]})")
            return None
        problem = self._check_loaded(index, manifest)
        if problem:
            quarantine(path, problem)
            return None
        return IndexState(
            index=index,
            kind=manifest.index_type,
            params=params,
            covered=manifest.rows_covered,
            ntrained_on=manifest.ntrained_on,
            dead=0,
        )

    def _check_loaded(self, index: Any, manifest: StoreManifest) -> str | None:
        if index.d != self.dim:
            return f"index dim {index.d} != store dim {self.dim}"
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            return "index metric is not inner product"
        if index.ntotal > manifest.rows_covered:
            return f"index holds {index.ntotal} vectors, more than its {manifest.rows_covered} rows"
        is_ivf = isinstance(index, faiss.IndexIVF)
        if (manifest.index_type == "ivfpq") != is_ivf:
            return f"index file is not the {manifest.index_type} index the manifest names"
        if is_ivf and not index.is_trained:
            return "IVF index is not trained"
        if not is_ivf and not isinstance(index, faiss.IndexIDMap):
            return "flat index file is not an IDMap"
        return None


@dataclass
class Recovered:
    live: LiveRows
    state: IndexState
    # True when the index holds rows no snapshot has: the caller schedules one.
    want_snapshot: bool


def recover(
    snapshots: Snapshots,
    catalog: Catalog,
    vectors: VectorFile,
    settings: FaissStoreSettings,
    ivf_threshold: int,
) -> Recovered:
    """Load the last good snapshot and replay the catalog beyond it, or rebuild."""
    t0 = time.perf_counter()
    directory = snapshots.directory
    catalog_rows = catalog.next_row
    live = LiveRows.from_mask(catalog.live_mask())
    found = [g for p in directory.glob("index-*.faiss") if (g := _generation_of(p)) is not None]
    manifest = snapshots.read_manifest(catalog_rows)
    state = snapshots.load(manifest, catalog_rows) if manifest is not None else None
    if manifest is not None:
        found.append(manifest.generation)
    snapshots.next_generation = max(found, default=0) + 1
    if state is not None and manifest is not None:
        replay = live.rows_between(state.covered, catalog_rows)
        add_rows(state.index, vectors, replay)
        state.covered = catalog_rows
        state.dead = state.index.ntotal - live.count_below(catalog_rows)
        snapshots.generation = manifest.generation
        snapshots.rows_covered = manifest.rows_covered
        if replay.size == 0:
            snapshots.key = snapshots.key_of(state)
        logger.info(
            "%s: loaded %s snapshot generation %d (%d rows) and replayed %d rows in %.2fs",
            directory,
            state.kind,
            manifest.generation,
            manifest.rows_covered,
            replay.size,
            time.perf_counter() - t0,
        )
        # Persist a replay so the next start does not redo it.
        result = Recovered(live, state, want_snapshot=replay.size > 0)
    else:
        rows = live.rows_between(0, catalog_rows)
        state = build_from_rows(
            vectors, rows, catalog_rows, settings, ivf_threshold, str(directory)
        )
        logger.info(
            "%s: built %s index over %d live rows from the catalog in %.2fs",
            directory,
            state.kind,
            live.count,
            time.perf_counter() - t0,
        )
        result = Recovered(live, state, want_snapshot=catalog_rows > 0)
    snapshots.remove_unreferenced(keep=snapshots.generation)
    return result
