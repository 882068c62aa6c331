"""`FaissStore`: the durable vector store of DESIGN.md section 4.

Files in the store directory:
    catalog.sqlite     ids, rows, metadata, tombstones (source of truth, WAL, synchronous=FULL)
    vectors.f16        exact fp16 rows (source of truth, fsync'd before the catalog commit)
    index-<gen>.faiss  snapshot of the derived FAISS index
    manifest.json      which snapshot is good and which rows it covers (written last)
    store.lock         flock: one process owns a store directory

Search path. Below the IVF threshold the index is `IDMap,Flat` (exact inner product over the
fp16-rounded vectors, so its scores equal exact re-scoring). Above it, a background thread
trains `IVF{nlist},PQ{m}x{nbits}np` on a sample of `vectors.f16`, adds every live row, catches
up with rows written meanwhile and swaps the new index in. IVF-PQ searches fetch
max(k x candidate_factor, min_candidates) candidates with a per-call
`SearchParametersIVF(nprobe, sel)` and re-score them exactly from `vectors.f16`. FAISS ids are
vector rows; tombstoned rows stay in the index until compaction and are excluded by an
`IDSelectorBitmap` over the live rows. A search answers as of the live rows it started with.

Threads. FAISS parallelises with OpenMP, whose thread count is a per-thread setting: the
store sets it explicitly in every thread that calls FAISS (`settings.faiss_threads`, 0 = usable
cores, for training, rebuilds, compaction and searches of >= _PARALLEL_MIN_QUERIES queries; ONE
thread for smaller searches). A parallel region for one query costs more than it saves, and on
a machine whose cores are busy with onnxruntime it waits for a preempted team thread: measured
on 2 cores, a flat search of 13 vectors took p50 0.01 ms but p99 15 ms and max 28 ms with 2
threads, 0.05 ms p99 with one. `app/index/__init__.py` also makes idle OpenMP threads sleep
instead of spin (OMP_WAIT_POLICY=PASSIVE unless set): spinning threads took the cores from
working ones and made IVF-PQ training 3-4x slower on a loaded 2-core machine.

Locks (taken in this order: _write_mutex before _index_lock; _snapshot_mutex before
_index_lock; never _index_lock before either):
    _write_mutex   one writer at a time: add, delete, and the final catch-up + swap of a
                   background rebuild. fsync and the catalog commit happen under it only.
    _index_lock    readers-writer lock on the FAISS object and the live-row view. Searches
                   hold it shared while FAISS runs; a writer holds it exclusive only for
                   `add_with_ids` of one chunk of <= 4096 rows (or a pointer swap), so a
                   search waits at most one chunk for a write.
    _snapshot_mutex  one snapshot at a time; serialises the index under the shared lock.

Recovery rules (`FaissStore.open`):
    * stale `.*.tmp` files (a crash mid-write) are deleted with a warning;
    * vector rows beyond the catalog are orphans of a crash before the commit: truncated;
      a vector file shorter than the catalog needs -> StoreCorrupt (data loss, refuse);
    * the manifest's snapshot is loaded when the manifest parses, the file exists, its size
      and sha256 match and FAISS reads it; rows >= rows_covered that are live in the catalog
      are replayed into it;
    * anything else (unreadable manifest, missing generation, truncated/corrupt file, a
      snapshot covering rows the catalog does not have) -> warning, the bad file renamed
      `<name>.corrupt-<UTC timestamp>`, index rebuilt from catalog + vectors (flat or IVF-PQ
      by size, synchronously), and a fresh snapshot written in the background;
    * another dim or model sha256 recorded in the catalog -> ArtifactMismatch.

Compaction: once tombstones exceed compact_ratio of the index, the worker clones the index
(shared lock), `remove_ids` the dead rows from the clone, catches up and swaps it in.
`vectors.f16` is append-only: tombstoned rows keep their bytes until `rebuild_store` copies
the live items into a new directory offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import ValidationError

from app.artifacts import StoreManifest, fsync_dir, write_json_atomic
from app.config import IndexSettings
from app.errors import ArtifactMismatch, SimSearchError, StoreCorrupt
from app.index.catalog import Catalog
from app.index.store import Hit, IndexType, InvalidVectors, Item, StoreStats
from app.index.vectors import DTYPE, VectorFile

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.f16"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "store.lock"
FLAT_FACTORY = "IDMap,Flat"

# FAISS warns when k-means gets fewer than 39 points per centroid (Clustering.cpp).
MIN_POINTS_PER_CENTROID = 39
# Rows added to an index per FAISS call: bounds both the exclusive-lock hold time of a write
# and the float32 staging memory of a rebuild (16384 x 512 x 4 B = 32 MiB).
_WRITE_CHUNK = 4096
_BUILD_CHUNK = 16384
# IVF-PQ needs at least 39 x 16 points to train (nbits >= 4); below that we stay flat.
_MIN_IVF_ROWS = MIN_POINTS_PER_CENTROID * 16
# Searches with fewer queries than this run FAISS on one thread (see the module doc).
_PARALLEL_MIN_QUERIES = 16
# Queries re-scored per step: bounds the [chunk, fetch, D] float32 candidate block
# (256 x 80 x 512 x 4 B = 40 MiB).
_RESCORE_CHUNK = 256
# After a failed background task, wait this long before scheduling more work.
_RETRY_AFTER_S = 30.0
# A background rebuild catches up without blocking writers until at most this many rows are
# left, then finishes under the writer lock.
_CATCHUP_UNDER_LOCK = 4096


class StoreLocked(SimSearchError):
    """Another process (or another open store object) owns this store directory."""


class _Stopped(Exception):
    """A background build noticed close() and gave up."""


# ---------------------------------------------------------------------- IVF-PQ parameters
def _round_pow2(x: float) -> int:
    """Nearest power of two in log space (565 -> 512, 800 -> 1024)."""
    return 1 << max(0, math.floor(math.log2(max(x, 1.0)) + 0.5))


def _pq_subquantizers(d: int) -> int:
    """d/8 sub-quantizers (8 dims each: 64 for 512-d) when 8 divides d, else the largest
    divisor of d not above d/8 (PQ needs m | d)."""
    if d % 8 == 0:
        return d // 8
    return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)


def choose_ivf_params(n: int, d: int, n_train: int | None = None) -> dict[str, Any]:
    """IVF-PQ parameters for n vectors of dim d, trained on n_train (default n) of them.

    nlist: 4 * sqrt(n) rounded to a power of two (the FAISS wiki's 4..16 sqrt(n) rule, low end
    because exact re-scoring makes up for coarse lists), halved until n_train >= 39 * nlist so
    k-means has FAISS's minimum 39 points per centroid. 1M vectors -> IVF4096.
    m: d/8 sub-quantizers (PQ64 for 512-d). nbits: 8, fewer only when n_train < 39 * 256
    (PQ k-means would be under-trained; only test-sized collections hit this).
    "np" in the factory string disables polysemous training, which cost minutes for no gain.
    """
    if n < 1 or d < 1:
        raise ValueError(f"need n >= 1 and d >= 1, got n={n}, d={d}")
    n_train = n if n_train is None else min(n, n_train)
    nlist = _round_pow2(4.0 * math.sqrt(n))
    while nlist > 1 and n_train < MIN_POINTS_PER_CENTROID * nlist:
        nlist //= 2
    m = _pq_subquantizers(d)
    nbits = 8
    while nbits > 4 and n_train < MIN_POINTS_PER_CENTROID * (1 << nbits):
        nbits -= 1
    return {
        "nlist": nlist,
        "m": m,
        "nbits": nbits,
        "factory": f"IVF{nlist},PQ{m}x{nbits}np",
        "metric": "inner_product",
    }


def ivf_min_vectors(settings: IndexSettings) -> int:
    """Live count at which the store switches from exact search to IVF-PQ.

    settings.ivf_min_vectors when set; else the smallest n at which the un-capped nlist of
    `choose_ivf_params` already meets the 39-per-centroid floor: nlist 512 at n = 19,968.
    """
    if settings.ivf_min_vectors > 0:
        return settings.ivf_min_vectors
    nlist = 1
    while True:
        # n for which 4 sqrt(n) rounds to nlist: [nlist^2 / 32, nlist^2 / 8).
        low, high = math.ceil(nlist * nlist / 32), nlist * nlist / 8
        n = max(low, MIN_POINTS_PER_CENTROID * nlist)
        if n < high:
            return n
        nlist *= 2


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------- concurrency helpers
class _RWLock:
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


def _bitmap_selector(bits: np.ndarray) -> Any:
    """`IDSelectorBitmap` over uint8 [ceil(n / 8)] little-endian bits (row r <-> bit r % 8 of
    byte r // 8). The numpy form of the SWIG constructor keeps a reference to `bits`."""
    return faiss.IDSelectorBitmap(bits)  # type: ignore[call-arg, arg-type]


@dataclass(frozen=True)
class _LiveRows:
    """Immutable view of which rows are live: replaced, never mutated, so a search can use
    the one it picked up (and FAISS can read its bitmap) while a writer builds the next.

    bits: uint8 [ceil(rows / 8)], bit (r % 8) of byte r // 8 set iff row r is live; this is
    exactly the layout `faiss.IDSelectorBitmap` reads.
    """

    bits: np.ndarray
    rows: int
    count: int

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> _LiveRows:
        bits = np.packbits(mask.astype(bool), bitorder="little")
        return cls(bits=bits, rows=int(mask.size), count=int(np.count_nonzero(mask)))

    def with_changes(self, rows: int, added: np.ndarray, removed: np.ndarray) -> _LiveRows:
        """New view over `rows` rows with `added` (not live before) set and `removed` (live
        before) cleared."""
        bits = np.zeros((rows + 7) // 8, dtype=np.uint8)
        bits[: self.bits.size] = self.bits
        if added.size:
            np.bitwise_or.at(bits, added >> 3, (1 << (added & 7)).astype(np.uint8))
        if removed.size:
            np.bitwise_and.at(bits, removed >> 3, ~(1 << (removed & 7)).astype(np.uint8))
        return _LiveRows(bits=bits, rows=rows, count=self.count + added.size - removed.size)

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
        return _bitmap_selector(self.bits)


@dataclass
class _IndexState:
    """The FAISS index and what it covers. Mutated only under the exclusive index lock."""

    index: Any  # faiss.IndexIDMap (flat) or faiss.IndexIVFPQ; ids are vector rows
    kind: IndexType
    params: dict[str, Any]
    # Every row < covered that is live is in the index; rows >= covered are not.
    covered: int
    ntrained_on: int
    # Rows in the index that are no longer live (tombstones awaiting compaction).
    dead: int


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for int arrays, without np.unique's first-call cost: in numpy 2.x its first
    call imports numpy.ma (12 ms measured), which the first search of a fresh service paid."""
    flat = np.sort(values, axis=None)
    if flat.size == 0:
        return flat
    return flat[np.concatenate(([True], flat[1:] != flat[:-1]))]


def _new_flat(dim: int) -> Any:
    return faiss.index_factory(dim, FLAT_FACTORY, faiss.METRIC_INNER_PRODUCT)


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _quarantine(path: Path, why: str) -> None:
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


def _lock_directory(directory: Path) -> int:
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


def _generation_of(path: Path) -> int | None:
    stem = path.name.removeprefix("index-").removesuffix(".faiss")
    return int(stem) if stem.isdigit() else None


# ---------------------------------------------------------------------- the store
class FaissStore:
    """FAISS-backed `VectorStore`. Create with `FaissStore.open(...)`; see the module doc."""

    def __init__(
        self,
        directory: Path,
        dim: int,
        settings: IndexSettings,
        model_sha256: str | None,
        catalog: Catalog,
        vectors: VectorFile,
        lock_fd: int,
    ) -> None:
        self.directory = directory
        self._dim = dim
        self.settings = settings
        self.model_sha256 = model_sha256
        self._catalog = catalog
        self._vectors = vectors
        self._lock_fd = lock_fd
        self._ivf_threshold = ivf_min_vectors(settings)
        # OpenMP threads for training, rebuilds and large searches (set per calling thread).
        self._threads = settings.faiss_threads or _cpu_count()

        self._write_mutex = threading.Lock()
        self._index_lock = _RWLock()
        self._snapshot_mutex = threading.Lock()
        self._live = _LiveRows.from_mask(np.zeros(0, dtype=bool))
        self._state = _IndexState(_new_flat(dim), "flat", {"factory": FLAT_FACTORY}, 0, 0, 0)
        self._closed = False

        # Snapshot bookkeeping (under _snapshot_mutex).
        self._generation = 0  # last durable generation
        self._next_generation = 1
        self._snapshot_rows = 0  # rows_covered of the last snapshot
        self._snapshot_key: tuple[int, int, int] | None = None

        # Background maintenance: one worker runs train > compact > snapshot requests in turn.
        self._cond = threading.Condition()
        self._stopping = False
        self._task: str | None = None
        self._want_train = False
        self._want_compact = False
        self._want_snapshot = False
        self._train_retry_at = 0  # after a failed training, wait for this live count
        self._retry_after = 0.0  # time.monotonic() before which nothing is scheduled
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        directory: Path,
        dim: int,
        settings: IndexSettings,
        model_sha256: str | None = None,
    ) -> FaissStore:
        """Open or create the store in `directory`, recovering from any crash (module doc).

        Raises ArtifactMismatch when the store holds vectors of another dim or model,
        StoreCorrupt when the source of truth itself lost data, StoreLocked when another
        process has the directory open.
        """
        directory = Path(directory)
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        lock_fd = _lock_directory(directory)
        catalog: Catalog | None = None
        vectors: VectorFile | None = None
        try:
            # Recovery may rebuild the index in this thread (OpenMP counts are per thread).
            faiss.omp_set_num_threads(settings.faiss_threads or _cpu_count())
            cls._remove_stale_temp_files(directory)
            catalog_path = directory / CATALOG_FILE
            vectors_path = directory / VECTORS_FILE
            if not catalog_path.exists() and vectors_path.exists() and vectors_path.stat().st_size:
                raise StoreCorrupt(
                    f"{directory}: {VECTORS_FILE} holds data but {CATALOG_FILE} is missing; "
                    "refusing to guess which rows are live. Restore the catalog or start a new "
                    "store directory."
                )
            catalog = Catalog.open(catalog_path)
            cls._check_identity(directory, catalog, dim, model_sha256)
            vectors = VectorFile.open(vectors_path, dim, catalog.next_row)
            store = cls(directory, dim, settings, model_sha256, catalog, vectors, lock_fd)
            store._recover()
        except BaseException:
            if vectors is not None:
                vectors.close()
            if catalog is not None:
                catalog.close()
            os.close(lock_fd)  # also releases the flock
            raise
        store._worker = threading.Thread(
            target=store._maintenance_loop, name=f"faiss-store:{directory.name}", daemon=True
        )
        store._worker.start()
        store._schedule()
        return store

    def close(self) -> None:
        """Stop background work (waits for a running build), write a final snapshot, close."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
        try:
            self.snapshot()
        except (OSError, RuntimeError) as exc:
            logger.error(
                "%s: final snapshot failed (%s); the next open replays from the catalog",
                self.directory,
                exc,
            )
        with self._write_mutex, self._index_lock.write():
            self._closed = True
        self._catalog.close()
        self._vectors.close()
        os.close(self._lock_fd)
        logger.info("%s: store closed", self.directory)

    def __enter__(self) -> FaissStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _remove_stale_temp_files(directory: Path) -> None:
        for tmp in sorted(directory.glob(".*.tmp")):
            logger.warning("%s: removing stale temp file of an interrupted write", tmp)
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _check_identity(
        directory: Path, catalog: Catalog, dim: int, model_sha256: str | None
    ) -> None:
        stored_dim = catalog.get_meta("dim")
        if stored_dim is None:
            catalog.set_meta("dim", str(dim))
        elif int(stored_dim) != dim:
            raise ArtifactMismatch(
                f"{directory}: store holds {stored_dim}-d vectors but {dim}-d were requested "
                "(the model's embedding_dim); use a new store directory or re-index with the "
                "model that built this store"
            )
        stored_sha = catalog.get_meta("model_sha256")
        if model_sha256 is None:
            return
        if stored_sha is None:
            catalog.set_meta("model_sha256", model_sha256)
        elif stored_sha != model_sha256:
            raise ArtifactMismatch(
                f"{directory}: store was built with model sha256 {stored_sha[:12]}... but the "
                f"loaded model is {model_sha256[:12]}...; descriptors of different models are "
                "not comparable. Use a new store directory or re-index with this model."
            )

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """Load the last good snapshot and replay the catalog beyond it, or rebuild."""
        t0 = time.perf_counter()
        catalog_rows = self._catalog.next_row
        self._live = _LiveRows.from_mask(self._catalog.live_mask())
        found = [
            g for p in self.directory.glob("index-*.faiss") if (g := _generation_of(p)) is not None
        ]
        manifest = self._read_manifest()
        state = self._load_snapshot(manifest, catalog_rows) if manifest is not None else None
        if manifest is not None:
            found.append(manifest.generation)
        self._next_generation = max(found, default=0) + 1
        if state is not None and manifest is not None:
            replay = self._live.rows_between(state.covered, catalog_rows)
            self._add_rows(state.index, replay)
            state.covered = catalog_rows
            state.dead = state.index.ntotal - self._live.count_below(catalog_rows)
            self._state = state
            self._generation = manifest.generation
            self._snapshot_rows = manifest.rows_covered
            if replay.size == 0:
                self._snapshot_key = self._key(state)
            else:  # persist the replay so the next start does not redo it
                self._want_snapshot = True
            logger.info(
                "%s: loaded %s snapshot generation %d (%d rows) and replayed %d rows in %.2fs",
                self.directory,
                state.kind,
                manifest.generation,
                manifest.rows_covered,
                replay.size,
                time.perf_counter() - t0,
            )
        else:
            self._state = self._build_from_source(catalog_rows)
            self._want_snapshot = catalog_rows > 0
            logger.info(
                "%s: built %s index over %d live rows from the catalog in %.2fs",
                self.directory,
                self._state.kind,
                self._live.count,
                time.perf_counter() - t0,
            )
        self._remove_unreferenced_generations(keep=self._generation)

    def _read_manifest(self) -> StoreManifest | None:
        path = self.directory / MANIFEST_FILE
        if not path.exists():
            if self._catalog.next_row:
                logger.warning(
                    "%s: no manifest (crash before the first snapshot?); rebuilding the index "
                    "from the catalog",
                    path,
                )
            return None
        try:
            manifest = StoreManifest.model_validate_json(path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            _quarantine(path, f"unreadable manifest ({str(exc).splitlines()[0]})")
            return None
        if manifest.dim != self._dim:
            _quarantine(path, f"manifest dim {manifest.dim} != catalog dim {self._dim}")
            return None
        if (
            manifest.model_sha256 is not None
            and self.model_sha256 is not None
            and manifest.model_sha256 != self.model_sha256
        ):
            _quarantine(path, "manifest names another model than the catalog")
            return None
        return manifest

    def _load_snapshot(self, manifest: StoreManifest, catalog_rows: int) -> _IndexState | None:
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
            _quarantine(
                path,
                f"snapshot covers {manifest.rows_covered} rows but the catalog has only "
                f"{catalog_rows}",
            )
            return None
        params = dict(manifest.index_params)
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            _quarantine(path, f"unreadable index file ({exc})")
            return None
        want_bytes = params.pop("file_bytes", None)
        want_sha = params.pop("file_sha256", None)
        params.pop("ntotal", None)
        if want_bytes is not None and data.size != want_bytes:
            _quarantine(
                path, f"truncated or extended index file ({data.size} != {want_bytes} bytes)"
            )
            return None
        if want_sha is not None and hashlib.sha256(data.data).hexdigest() != want_sha:
            _quarantine(path, "index file checksum mismatch")
            return None
        try:
            index = faiss.deserialize_index(data)
        except (RuntimeError, MemoryError, ValueError) as exc:
            _quarantine(path, f"FAISS cannot read the index file ({str(exc).splitlines()[0]})")
            return None
        problem = self._check_loaded(index, manifest)
        if problem:
            _quarantine(path, problem)
            return None
        return _IndexState(
            index=index,
            kind=manifest.index_type,
            params=params,
            covered=manifest.rows_covered,
            ntrained_on=manifest.ntrained_on,
            dead=0,
        )

    def _check_loaded(self, index: Any, manifest: StoreManifest) -> str | None:
        if index.d != self._dim:
            return f"index dim {index.d} != store dim {self._dim}"
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

    def _remove_unreferenced_generations(self, keep: int) -> None:
        for path in self.directory.glob("index-*.faiss"):
            if _generation_of(path) != keep:
                logger.info("%s: removing unreferenced snapshot %s", self.directory, path.name)
                path.unlink(missing_ok=True)

    def _build_from_source(self, rows_total: int) -> _IndexState:
        """Synchronous rebuild from catalog + vectors: IVF-PQ when big enough, else flat."""
        rows = self._live.rows_between(0, rows_total)
        if rows.size >= max(self._ivf_threshold, _MIN_IVF_ROWS):
            index, params = self._build_ivfpq(rows)
            kind: IndexType = "ivfpq"
            ntrained = int(rows.size)
        else:
            index, params, kind, ntrained = (
                _new_flat(self._dim),
                {"factory": FLAT_FACTORY},
                "flat",
                0,
            )
            self._add_rows(index, rows)
        return _IndexState(index, kind, params, rows_total, ntrained, dead=0)

    # ------------------------------------------------------------------ building blocks
    def _add_rows(self, index: Any, rows: np.ndarray, stoppable: bool = False) -> None:
        """Add rows (from vectors.f16) to a private index, in chunks."""
        for start in range(0, rows.size, _BUILD_CHUNK):
            if stoppable and self._stopping:
                raise _Stopped
            chunk = rows[start : start + _BUILD_CHUNK]
            index.add_with_ids(self._vectors.gather(chunk), chunk)

    def _build_ivfpq(self, rows: np.ndarray, stoppable: bool = False) -> tuple[Any, dict]:
        """Train IVF-PQ on a random sample of `rows` and add all of them. No locks held."""
        n = int(rows.size)
        n_train = min(n, self.settings.training_sample)
        params = choose_ivf_params(n, self._dim, n_train=n_train)
        # Seeded by n: the same collection trains the same index (reproducible benchmarks).
        rng = np.random.default_rng(n)
        sample = np.sort(rng.choice(rows, size=n_train, replace=False))
        train_x = self._vectors.gather(sample)  # [n_train, D] float32
        index = faiss.index_factory(self._dim, params["factory"], faiss.METRIC_INNER_PRODUCT)
        # Spherical k-means: centroids on the unit sphere, as the data (cosine similarity).
        faiss.extract_index_ivf(index).cp.spherical = True
        # Default for callers that search without parameters; we always pass nprobe per call.
        faiss.extract_index_ivf(index).nprobe = min(self.settings.nprobe, params["nlist"])
        t0 = time.perf_counter()
        index.train(train_x)
        del train_x
        logger.info(
            "%s: trained %s on %d of %d vectors in %.2fs",
            self.directory,
            params["factory"],
            n_train,
            n,
            time.perf_counter() - t0,
        )
        self._add_rows(index, rows, stoppable=stoppable)
        return index, params

    def _catch_up_and_swap(
        self, index: Any, covered: int, kind: IndexType, params: dict, ntrained_on: int
    ) -> bool:
        """Add rows written since `covered` to a privately built index, then swap it in.

        Catches up without blocking writers until few rows are left, then takes the writer
        lock (writes wait; searches continue on the old index) for the rest and the swap.
        """
        for _ in range(16):
            if self._stopping:
                raise _Stopped
            target = self._state.covered
            if target - covered <= _CATCHUP_UNDER_LOCK:
                break
            self._add_rows(index, self._live.rows_between(covered, target), stoppable=True)
            covered = target
        with self._write_mutex:
            if self._closed:
                return False
            target = self._state.covered
            self._add_rows(index, self._live.rows_between(covered, target))
            with self._index_lock.write():
                live = self._live
                self._state = _IndexState(
                    index=index,
                    kind=kind,
                    params=params,
                    covered=target,
                    ntrained_on=ntrained_on,
                    dead=index.ntotal - live.count_below(target),
                )
        return True

    # ------------------------------------------------------------------ validation
    @property
    def dim(self) -> int:
        return self._dim

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.directory}: store is closed")

    def _as_matrix(self, vectors: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self._dim:
            raise InvalidVectors(
                f"{what} must have shape [n, {self._dim}], got {list(np.shape(vectors))}"
            )
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise InvalidVectors(f"{what} must be real numbers, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InvalidVectors(f"{what} contain NaN or infinite values")
        return x

    @staticmethod
    def _metadata_json(
        metadata: Sequence[dict[str, Any] | None] | None, n: int
    ) -> list[str | None]:
        if metadata is None:
            return [None] * n
        if len(metadata) != n:
            raise InvalidVectors(f"got {len(metadata)} metadata entries for {n} ids")
        out: list[str | None] = []
        for i, meta in enumerate(metadata):
            if meta is None:
                out.append(None)
                continue
            if not isinstance(meta, dict):
                raise InvalidVectors(f"metadata[{i}] must be a JSON object or null")
            try:
                out.append(json.dumps(meta, ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise InvalidVectors(f"metadata[{i}] is not JSON-serialisable: {exc}") from exc
        return out

    # ------------------------------------------------------------------ writes
    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[str]:
        """Store vectors [N, D] (float32, L2-normalised by the caller) under `ids`.

        Durable on return: the fp16 rows are fsync'd, then the catalog transaction commits.
        Re-adding an existing id replaces it (its old row becomes a tombstone). Duplicate ids
        within one batch are rejected (InvalidVectors, a ValueError): which one should win is
        the caller's decision, not ours. Returns the ids in input order.
        """
        ids = list(ids)
        if not ids:
            return []
        for item_id in ids:
            if not isinstance(item_id, str) or not item_id:
                raise InvalidVectors(f"ids must be non-empty strings, got {item_id!r}")
        if len(set(ids)) != len(ids):
            dups = sorted(i for i, n in Counter(ids).items() if n > 1)
            raise InvalidVectors(f"duplicate ids in one batch: {dups[:5]}")
        x = self._as_matrix(vectors, "vectors")
        if x.shape[0] != len(ids):
            raise InvalidVectors(f"got {x.shape[0]} vectors for {len(ids)} ids")
        with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
            x16 = x.astype(DTYPE)  # [N, D] float16: what is stored and what every score uses
        if not np.isfinite(x16).all():
            raise InvalidVectors("vectors exceed the float16 range; pass L2-normalised vectors")
        meta_json = self._metadata_json(metadata, len(ids))
        self._append(ids, x16, meta_json)
        return ids

    def _append(
        self,
        ids: list[str],
        x16: np.ndarray,
        meta_json: list[str | None],
        created_at: Sequence[float] | None = None,
    ) -> None:
        """The write path of validated input: x16 [N, D] float16, unique ids."""
        exact = x16.astype(np.float32)  # [N, D]: the index holds exactly what re-scoring uses
        with self._write_mutex:
            self._check_open()
            first = self._catalog.next_row
            if self._vectors.rows != first:
                raise StoreCorrupt(
                    f"{self.directory}: {self._vectors.rows} vector rows but catalog expects "
                    f"{first}"
                )
            self._vectors.append(x16)  # fsync'd before the catalog may point at it
            try:
                pairs = self._catalog.upsert(ids, meta_json, first, created_at)
            except BaseException:
                self._vectors.truncate(first)
                raise
            # Durable from here. Publish to the index chunk by chunk so a search waits for
            # at most one chunk; an id's old row disappears with the chunk holding its new
            # row, so no search sees the id twice or not at all.
            replaced_new = np.array([new for _, new in pairs], dtype=np.int64)
            replaced_old = np.array([old for old, _ in pairs], dtype=np.int64)
            for start in range(0, len(ids), _WRITE_CHUNK):
                stop = min(start + _WRITE_CHUNK, len(ids))
                rows = np.arange(first + start, first + stop, dtype=np.int64)
                in_chunk = (replaced_new >= first + start) & (replaced_new < first + stop)
                removed = replaced_old[in_chunk]
                live = self._live.with_changes(first + stop, rows, removed)
                with self._index_lock.write():
                    state = self._state
                    state.index.add_with_ids(exact[start:stop], rows)
                    state.covered = first + stop
                    self._live = live
                    state.dead = state.index.ntotal - live.count_below(state.covered)
        self._schedule()

    def delete(self, id: str) -> bool:
        """Tombstone `id`; durable on return. False when the id is not live."""
        if not isinstance(id, str):
            raise InvalidVectors(f"id must be a string, got {id!r}")
        with self._write_mutex:
            self._check_open()
            row = self._catalog.delete(id)
            if row is None:
                return False
            removed = np.array([row], dtype=np.int64)
            live = self._live.with_changes(self._live.rows, removed[:0], removed)
            with self._index_lock.write():
                state = self._state
                self._live = live
                state.dead = state.index.ntotal - live.count_below(state.covered)
        self._schedule()
        return True

    # ------------------------------------------------------------------ reads
    def get(self, id: str, with_vector: bool = False) -> Item | None:
        self._check_open()
        found = self._catalog.lookup(id)
        if found is None:
            return None
        vector = self._vectors.gather([found.row])[0] if with_vector else None
        return Item(
            id=found.id, metadata=found.metadata, vector=vector, created_at=found.created_at
        )

    def contains(self, ids: Sequence[str]) -> set[str]:
        self._check_open()
        return self._catalog.contains(list(ids))

    def __len__(self) -> int:
        return self._live.count

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        candidate_factor: int | None = None,
        with_vectors: bool = False,
    ) -> list[list[Hit]]:
        """Top-k live items per query [Q, D] (float32, L2-normalised), best first.

        Scores are exact inner products with the stored fp16 vectors (cosine similarity).
        IVF-PQ fetches max(k x candidate_factor, settings.min_candidates) candidates probing
        `nprobe` lists (clamped to [1, min(max_nprobe, nlist)]; per call, the shared index is
        never mutated) and re-scores them exactly. Hits below `score_threshold` are dropped.
        """
        q = self._as_matrix(queries, "queries")
        if k < 1:
            raise InvalidVectors(f"k must be >= 1, got {k}")
        factor = self.settings.candidate_factor if candidate_factor is None else candidate_factor
        if factor < 1:
            raise InvalidVectors(f"candidate_factor must be >= 1, got {factor}")
        if nprobe is not None and nprobe < 1:
            raise InvalidVectors(f"nprobe must be >= 1, got {nprobe}")

        with self._index_lock.read():
            self._check_open()
            state = self._state
            if state.index.ntotal == 0:
                return [[] for _ in range(q.shape[0])]
            # Only pay for the selector while the index holds tombstones: a selector turns
            # the flat search from BLAS into a per-vector loop.
            sel = self._live.selector() if state.dead else None
            if state.kind == "ivfpq":
                probes = nprobe if nprobe is not None else self.settings.nprobe
                probes = max(1, min(probes, self.settings.max_nprobe, state.params["nlist"]))
                params: Any = faiss.SearchParametersIVF()
                params.nprobe = probes
                if sel is not None:
                    params.sel = sel  # the wrapper keeps a reference to sel (and its bitmap)
                fetch = max(k * factor, self.settings.min_candidates)
            else:
                params = None
                if sel is not None:
                    params = faiss.SearchParameters()
                    params.sel = sel
                fetch = k
            # One thread for a few queries, settings.faiss_threads for batches (module doc).
            faiss.omp_set_num_threads(
                1 if q.shape[0] < _PARALLEL_MIN_QUERIES else self._threads
            )
            # scores, rows: [Q, fetch]; rows -1 where fewer candidates exist.
            scores, rows = state.index.search(q, fetch, params=params)
            kind = state.kind

        if kind == "ivfpq":
            scores, rows = self._rescore(q, rows, k)
        return self._hits(scores, rows, score_threshold, with_vectors)

    def _rescore(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of PQ candidates from vectors.f16; [Q, fetch] -> sorted [Q, k].

        Per block of queries: gather the candidates' fp16 rows [c, fetch, D], convert once to
        float32 and take one dot product per (query, candidate). No de-duplication across
        queries: candidate lists rarely overlap, and a dedup costs a sort plus a second
        gather of every row (it halved batched QPS at 100k x 512).
        """
        valid = rows >= 0
        exact = np.full(rows.shape, -np.inf, dtype=np.float32)
        if valid.any():
            safe = np.where(valid, rows, 0)
            for start in range(0, q.shape[0], _RESCORE_CHUNK):
                stop = start + _RESCORE_CHUNK
                cand = self._vectors.gather_block(safe[start:stop])  # [c, fetch, D] float32
                exact[start:stop] = np.einsum("cfd,cd->cf", cand, q[start:stop])
            exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, order, 1), np.take_along_axis(rows, order, 1)

    def _hits(
        self,
        scores: np.ndarray,
        rows: np.ndarray,
        score_threshold: float | None,
        with_vectors: bool,
    ) -> list[list[Hit]]:
        keep = rows >= 0
        if score_threshold is not None:
            keep &= scores >= score_threshold
        wanted = _sorted_unique(rows[keep])
        info = self._catalog.ids_and_metadata(wanted.tolist())
        vectors: dict[int, np.ndarray] = {}
        if with_vectors and wanted.size:
            vectors = dict(zip(wanted.tolist(), self._vectors.gather(wanted), strict=True))
        # Plain lists once, not numpy indexing per query: this loop is most of the store's
        # own cost on top of FAISS for small k.
        keep_lists = None if keep.all() else keep.tolist()
        get_info, get_vector = info.get, vectors.get
        out: list[list[Hit]] = []
        score_lists, row_lists = scores.tolist(), rows.tolist()
        for qi, (score_row, index_row) in enumerate(zip(score_lists, row_lists, strict=True)):
            mask = None if keep_lists is None else keep_lists[qi]
            hits: list[Hit] = []
            for j, (score, row) in enumerate(zip(score_row, index_row, strict=True)):
                if mask is not None and not mask[j]:
                    continue
                # A search answers as of the live rows it started with: a row replaced or
                # deleted since is still returned (rows are immutable), so a concurrent
                # re-add never makes an id vanish from a result.
                entry = get_info(row)
                if entry is None:  # pragma: no cover - every indexed row is in the catalog
                    continue
                hits.append(Hit(entry[0], score, entry[1], row, get_vector(row)))
            out.append(hits)
        return out

    def stats(self) -> StoreStats:
        live, state = self._live, self._state
        params = dict(state.params)
        if state.kind == "ivfpq":
            params["nprobe"] = min(self.settings.nprobe, params["nlist"])
            params["ntrained_on"] = state.ntrained_on
        params["indexed"] = int(state.index.ntotal)
        params["indexed_tombstones"] = int(state.dead)
        with self._cond:
            training = self._want_train or self._task == "train"
        return StoreStats(
            index_type=state.kind,
            ntotal=live.count,
            rows=live.rows,
            tombstones=live.rows - live.count,
            generation=self._generation,
            dim=self._dim,
            training=training,
            index_params=params,
        )

    # ------------------------------------------------------------------ snapshots
    @staticmethod
    def _key(state: _IndexState) -> tuple[int, int, int]:
        return (id(state.index), state.covered, int(state.index.ntotal))

    def snapshot(self) -> int:
        """Persist the index as `index-<gen>.faiss` + manifest; return the generation.

        temp file in the same folder -> fsync -> os.replace -> fsync(dir), manifest last, then
        older generations are deleted. Skipped when nothing changed since the last one.
        """
        with self._snapshot_mutex:
            with self._index_lock.read():
                self._check_open()
                state = self._state
                key = self._key(state)
                if key == self._snapshot_key:
                    return self._generation
                # serialize = one memcpy-like pass; writes wait for it, searches do not.
                blob = faiss.serialize_index(state.index)  # uint8 [bytes]
                kind, params, covered = state.kind, dict(state.params), state.covered
                ntotal, ntrained = int(state.index.ntotal), state.ntrained_on
            generation = self._next_generation
            self._next_generation += 1
            name = f"index-{generation}.faiss"
            final = self.directory / name
            tmp = self.directory / f".{name}.tmp"
            with tmp.open("wb") as handle:
                handle.write(blob.data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
            fsync_dir(self.directory)
            params.update(
                ntotal=ntotal,
                file_bytes=int(blob.size),
                file_sha256=hashlib.sha256(blob.data).hexdigest(),
            )
            manifest = StoreManifest(
                generation=generation,
                dim=self._dim,
                index_type=kind,
                index_file=name,
                index_params=params,
                rows_covered=covered,
                ntrained_on=ntrained,
                model_sha256=self.model_sha256,
            )
            write_json_atomic(self.directory / MANIFEST_FILE, manifest.model_dump(mode="json"))
            self._generation = generation
            self._snapshot_rows = covered
            self._snapshot_key = key
            self._remove_unreferenced_generations(keep=generation)
        logger.info(
            "%s: snapshot generation %d (%s, %d vectors, rows_covered %d, %.1f MiB)",
            self.directory,
            generation,
            kind,
            ntotal,
            covered,
            blob.size / 2**20,
        )
        return generation

    # ------------------------------------------------------------------ background work
    def _schedule(self) -> None:
        """Ask the worker for training, compaction or a snapshot when they are due."""
        live, state = self._live, self._state
        with self._cond:
            if self._stopping or time.monotonic() < self._retry_after:
                return
            training = self._want_train or self._task == "train"
            if state.kind == "flat":
                due = live.count >= max(self._ivf_threshold, _MIN_IVF_ROWS)
            else:  # retrain once the collection has grown retrain_growth-fold
                due = live.count >= self.settings.retrain_growth * max(state.ntrained_on, 1)
            if due and not training and live.count >= self._train_retry_at:
                self._want_train = True
            if (
                not self._want_train
                and state.dead > 0
                and state.dead > self.settings.compact_ratio * state.index.ntotal
            ):
                self._want_compact = True
            if state.covered - self._snapshot_rows >= self.settings.snapshot_every:
                self._want_snapshot = True
            if self._want_train or self._want_compact or self._want_snapshot:
                self._cond.notify_all()

    def _maintenance_loop(self) -> None:
        # Training, compaction and snapshots run here: this thread's own OpenMP setting.
        faiss.omp_set_num_threads(self._threads)
        while True:
            with self._cond:
                while not (
                    self._stopping or self._want_train or self._want_compact or self._want_snapshot
                ):
                    self._cond.wait()
                if self._stopping:
                    self._want_train = self._want_compact = self._want_snapshot = False
                    self._cond.notify_all()
                    return
                if self._want_train:
                    task, self._want_train = "train", False
                elif self._want_compact:
                    task, self._want_compact = "compact", False
                else:
                    task, self._want_snapshot = "snapshot", False
                self._task = task
            try:
                if task == "train":
                    self._train_in_background()
                elif task == "compact":
                    self._compact_in_background()
                else:
                    self.snapshot()
            except _Stopped:
                logger.info("%s: %s abandoned: store closing", self.directory, task)
            except Exception:  # the worker must survive; the source of truth is intact
                logger.exception(
                    "%s: background %s failed; retrying in %.0fs at the earliest",
                    self.directory,
                    task,
                    _RETRY_AFTER_S,
                )
                self._retry_after = time.monotonic() + _RETRY_AFTER_S
                if task == "train":
                    self._train_retry_at = int(self._live.count * 1.5) + 1
            finally:
                with self._cond:
                    self._task = None
                    self._cond.notify_all()
            self._schedule()

    def _train_in_background(self) -> None:
        # Read both under the lock: a write between the two reads would leave rows that are
        # live in neither the sample's view nor the catch-up range.
        with self._index_lock.read():
            live, covered = self._live, self._state.covered
        rows = live.rows_between(0, covered)
        if rows.size < _MIN_IVF_ROWS:
            return
        logger.info(
            "%s: training IVF-PQ in the background on %d live vectors (%s index serves meanwhile)",
            self.directory,
            rows.size,
            self._state.kind,
        )
        t0 = time.perf_counter()
        index, params = self._build_ivfpq(rows, stoppable=True)
        if self._catch_up_and_swap(index, covered, "ivfpq", params, int(rows.size)):
            logger.info(
                "%s: swapped in %s (%d vectors) after %.2fs",
                self.directory,
                params["factory"],
                index.ntotal,
                time.perf_counter() - t0,
            )
            self.snapshot()

    def _compact_in_background(self) -> None:
        with self._index_lock.read():
            state = self._state
            if state.dead == 0:
                return
            # Clone under the shared lock (searches go on); remove from the private copy.
            clone = faiss.clone_index(state.index)
            covered, kind, params, ntrained = (
                state.covered,
                state.kind,
                state.params,
                state.ntrained_on,
            )
            live = self._live
        # Dead = not live; rows >= covered are not in the clone, so their bits do not matter.
        removed = clone.remove_ids(_bitmap_selector(np.invert(live.bits)))
        if self._catch_up_and_swap(clone, covered, kind, params, ntrained):
            logger.info(
                "%s: compacted %d tombstones out of the %s index", self.directory, removed, kind
            )
            self.snapshot()

    def wait_for_training(self, timeout: float | None = None) -> bool:
        """Block until no training is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._want_train and self._task != "train", timeout
            )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the worker has nothing pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._task is None
                    and not (self._want_train or self._want_compact or self._want_snapshot)
                ),
                timeout,
            )


@contextlib.contextmanager
def open_store(
    directory: Path, dim: int, settings: IndexSettings, model_sha256: str | None = None
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
    settings: IndexSettings,
    model_sha256: str | None = None,
) -> int:
    """Offline: copy the live items of `source` into a new store at `target`; return how many.

    Rows are renumbered densely, so the space tombstoned rows hold in `vectors.f16` (which an
    online store never gives back) is reclaimed; ids, metadata, created_at and the exact fp16
    vectors are kept bit for bit. `source` must not be open elsewhere (its lock is taken) and
    is left untouched; `target` must not exist or be empty. Swap the directories afterwards.
    """
    source, target = Path(source), Path(target)
    if not (source / CATALOG_FILE).is_file():
        raise StoreCorrupt(f"{source}: no {CATALOG_FILE}; not a store directory")
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target}: rebuild target must be a new or empty directory")
    lock_fd = _lock_directory(source)
    try:
        catalog = Catalog.open(source / CATALOG_FILE)
        try:
            FaissStore._check_identity(source, catalog, dim, model_sha256)
            vectors = VectorFile.open(source / VECTORS_FILE, dim, catalog.next_row)
            try:
                with open_store(target, dim, settings, model_sha256) as out:
                    rows = catalog.live_rows()
                    for start in range(0, rows.size, _BUILD_CHUNK):
                        chunk = rows[start : start + _BUILD_CHUNK]
                        info = catalog.rows_info(chunk)
                        entries = [info[int(r)] for r in chunk]
                        out._append(
                            [e.id for e in entries],
                            vectors.gather(chunk).astype(DTYPE),  # fp16 -> fp32 -> fp16: exact
                            [
                                None if e.metadata is None else json.dumps(e.metadata)
                                for e in entries
                            ],
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
