"""`FaissStore`: the embedded, durable `VectorStore` of docs/ARCHITECTURE.md 5 (one process).

Files in the store directory:
    catalog.sqlite     ids, rows, metadata, thumbnails, tombstones (source of truth, WAL,
                       synchronous=FULL)
    vectors.f16        exact fp16 rows (source of truth, fsync'd before the catalog commit)
    index-<gen>.faiss  snapshot of the derived FAISS index (app/index/snapshots.py)
    manifest.json      which snapshot is good and which rows it covers (written last)
    store.lock         flock: one process owns a store directory

This module holds the write path, the read/search path and the index swap; the concerns
around it live beside it:
    app/index/ivf.py          IVF-PQ parameter choice and index builds
    app/index/live_rows.py    live-row bitmaps, the index state, the readers-writer lock
    app/index/snapshots.py    snapshot files and crash recovery
    app/index/maintenance.py  the background worker (training, compaction, snapshots)
    app/index/rebuild.py      offline rebuild into a new directory

Search path. Below the IVF threshold the index is `IDMap,Flat` (exact inner product over the
fp16-rounded vectors, so its scores equal exact re-scoring). Above it, the worker trains
`IVF{nlist},PQ{m}x{nbits}np` on a sample of `vectors.f16`, adds every live row, catches up
with rows written meanwhile and swaps the new index in. IVF-PQ searches fetch
max(k x candidate_factor, min_candidates) candidates with a per-call
`SearchParametersIVF(nprobe, sel)` and re-score them exactly from `vectors.f16`. FAISS ids are
vector rows; tombstoned rows stay in the index until compaction and are excluded by an
`IDSelectorBitmap` over the live rows. A search answers as of the live rows it started with.

Metadata filters. The catalog selects the live rows whose metadata match (SQL form of
`MetadataFilter.matches`). Up to _EXACT_FILTER_MAX of them are scored exactly from
`vectors.f16` (a rare filter never comes back short because its rows sit in unprobed lists);
more are searched through the index with a bitmap selector of the matching rows.

Threads. FAISS parallelises with OpenMP, whose thread count is a per-thread setting: the
store sets it explicitly in every thread that calls FAISS (`settings.threads`, 0 = usable
cores, for training, rebuilds, compaction and searches of >= _PARALLEL_MIN_QUERIES queries; ONE
thread for smaller searches). A parallel region for one query costs more than it saves, and on
a machine whose cores are busy with onnxruntime it waits for a preempted team thread: measured
on 2 cores, a flat search of 13 vectors took p50 0.01 ms but p99 15 ms and max 28 ms with 2
threads, 0.05 ms p99 with one. `app/index/__init__.py` also makes idle OpenMP threads sleep
instead of spin (OMP_WAIT_POLICY=PASSIVE unless set).

Locks (taken in this order: _write_mutex before _index_lock; snapshot mutex before
_index_lock; never _index_lock before either):
    _write_mutex   one writer at a time: add, delete, and the final catch-up + swap of a
                   background rebuild. fsync and the catalog commit happen under it only.
    _index_lock    readers-writer lock on the FAISS object and the live-row view. Searches
                   hold it shared while FAISS runs; a writer holds it exclusive only for
                   `add_with_ids` of one chunk of <= 4096 rows (or a pointer swap), so a
                   search waits at most one chunk for a write.
    snapshots.mutex  one snapshot at a time; serialises the index under the shared lock.

Opening: vector rows beyond the catalog are orphans of a crash before the commit (truncated);
a vector file shorter than the catalog needs -> StoreCorrupt (data loss, refuse); another dim
or model sha256 recorded in the catalog -> ArtifactMismatch; the index itself is recovered as
app/index/snapshots.py describes.

Compaction: once tombstones exceed compact_ratio of the index, the worker clones the index
(shared lock), `remove_ids` the dead rows from the clone, catches up and swaps it in.
`vectors.f16` is append-only: tombstoned rows keep their bytes until `rebuild_store` copies
the live items into a new directory offline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.config import FaissStoreSettings
from app.errors import ArtifactMismatch, StoreCorrupt
from app.index.catalog import Catalog
from app.index.durable_rows import append_rows
from app.index.filters import MetadataFilter
from app.index.ivf import (
    FLAT_FACTORY,
    MIN_IVF_ROWS,
    BuildStopped,
    add_rows,
    build_ivfpq,
    choose_ivf_params,
    ivf_min_vectors,
    new_flat,
)
from app.index.live_rows import (
    IndexKind,
    IndexState,
    LiveRows,
    RWLock,
    bitmap_selector,
    sorted_unique,
)
from app.index.maintenance import Due, MaintenanceWorker, Task, due_tasks
from app.index.paging import decode_cursor, encode_cursor
from app.index.snapshots import (
    CATALOG_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    Snapshots,
    StoreLocked,
    lock_directory,
    recover,
    remove_stale_temp_files,
)
from app.index.store import Hit, InvalidVectors, Item, ItemPage, StoreStats
from app.index.validation import (
    as_matrix,
    check_ids,
    check_limit,
    check_search_args,
    check_thumbnails,
    metadata_json,
    to_float16,
)
from app.index.vectors import VectorFile
from app.threads import usable_cores

__all__ = [
    "CATALOG_FILE",
    "FLAT_FACTORY",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "VECTORS_FILE",
    "FaissStore",
    "StoreLocked",
    "choose_ivf_params",
    "ivf_min_vectors",
]

logger = logging.getLogger(__name__)

# Rows added to the live index per FAISS call: bounds the exclusive-lock hold time of a write.
_WRITE_CHUNK = 4096
# Searches with fewer queries than this run FAISS on one thread (see the module doc).
_PARALLEL_MIN_QUERIES = 16
# Queries re-scored per step: bounds the [chunk, fetch, D] float32 candidate block
# (256 x 80 x 512 x 4 B = 40 MiB).
_RESCORE_CHUNK = 256
# A background rebuild catches up without blocking writers until at most this many rows are
# left, then finishes under the writer lock.
_CATCHUP_UNDER_LOCK = 4096
# A filter matching at most this many rows is answered by exact scoring of those rows
# ([n, D] float32 gathered: 16384 x 512 x 4 B = 32 MiB), not through the ANN index.
_EXACT_FILTER_MAX = 16384


class FaissStore:
    """FAISS-backed `VectorStore`. Create with `FaissStore.open(...)`; see the module doc."""

    backend = "faiss"

    def __init__(
        self,
        directory: Path,
        dim: int,
        settings: FaissStoreSettings,
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
        self._threads = settings.threads or usable_cores()

        self._write_mutex = threading.Lock()
        self._index_lock = RWLock()
        self._snapshots = Snapshots(directory, dim, model_sha256)
        self._live = LiveRows.from_mask(np.zeros(0, dtype=bool))
        self._state = IndexState(new_flat(dim), "flat", {"factory": FLAT_FACTORY}, 0, 0, 0)
        self._closed = False
        self._worker = MaintenanceWorker(
            f"faiss-store:{directory.name}",
            self._run_task,
            live_count=lambda: self._live.count,
            # Training, compaction and snapshots run there: that thread's own OpenMP setting.
            on_start=lambda: faiss.omp_set_num_threads(self._threads),
        )
        self._worker.after_task = self._schedule

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        directory: Path,
        dim: int,
        settings: FaissStoreSettings,
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
        lock_fd = lock_directory(directory)
        catalog: Catalog | None = None
        vectors: VectorFile | None = None
        try:
            # Recovery may rebuild the index in this thread (OpenMP counts are per thread).
            faiss.omp_set_num_threads(settings.threads or usable_cores())
            remove_stale_temp_files(directory)
            catalog_path = directory / CATALOG_FILE
            vectors_path = directory / VECTORS_FILE
            if not catalog_path.exists() and vectors_path.exists() and vectors_path.stat().st_size:
                raise StoreCorrupt(
                    f"{directory}: {VECTORS_FILE} holds data but {CATALOG_FILE} is missing; "
                    "refusing to guess which rows are live. Restore the catalog or start a new "
                    "store directory."
                )
            catalog = Catalog.open(catalog_path)
            check_identity(directory, catalog, dim, model_sha256)
            vectors = VectorFile.open(vectors_path, dim, catalog.next_row)
            store = cls(directory, dim, settings, model_sha256, catalog, vectors, lock_fd)
            recovered = recover(store._snapshots, catalog, vectors, settings, store._ivf_threshold)
            store._live, store._state = recovered.live, recovered.state
        except BaseException:
            if vectors is not None:
                vectors.close()
            if catalog is not None:
                catalog.close()
            os.close(lock_fd)  # also releases the flock
            raise
        store._worker.start()
        if recovered.want_snapshot:
            store._worker.request(Due(snapshot=True), store._live.count)
        store._schedule()
        return store

    def close(self) -> None:
        """Stop background work (waits for a running build), write a final snapshot, close."""
        if self._worker.stopping:
            return
        self._worker.stop()
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

    # ------------------------------------------------------------------ background work
    def _schedule(self) -> None:
        """Ask the worker for training, compaction or a snapshot when they are due."""
        live, state = self._live, self._state
        due = due_tasks(
            live.count, state, self._snapshots.rows_covered, self.settings, self._ivf_threshold
        )
        self._worker.request(due, live.count)

    def _run_task(self, task: Task) -> None:
        if task == "train":
            self._train_in_background()
        elif task == "compact":
            self._compact_in_background()
        else:
            self.snapshot()

    def _should_stop(self) -> bool:
        return self._worker.stopping

    def _train_in_background(self) -> None:
        # Read both under the lock: a write between the two reads would leave rows that are
        # live in neither the sample's view nor the catch-up range.
        with self._index_lock.read():
            live, covered = self._live, self._state.covered
        rows = live.rows_between(0, covered)
        if rows.size < MIN_IVF_ROWS:
            return
        logger.info(
            "%s: training IVF-PQ in the background on %d live vectors (%s index serves meanwhile)",
            self.directory,
            rows.size,
            self._state.kind,
        )
        t0 = time.perf_counter()
        index, params = build_ivfpq(
            self._vectors, rows, self.settings, str(self.directory), self._should_stop
        )
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
        removed = clone.remove_ids(bitmap_selector(np.invert(live.bits)))
        if self._catch_up_and_swap(clone, covered, kind, params, ntrained):
            logger.info(
                "%s: compacted %d tombstones out of the %s index", self.directory, removed, kind
            )
            self.snapshot()

    def _catch_up_and_swap(
        self, index: Any, covered: int, kind: IndexKind, params: dict, ntrained_on: int
    ) -> bool:
        """Add rows written since `covered` to a privately built index, then swap it in.

        Catches up without blocking writers until few rows are left, then takes the writer
        lock (writes wait; searches continue on the old index) for the rest and the swap.
        """
        for _ in range(16):
            if self._worker.stopping:
                raise BuildStopped
            target = self._state.covered
            if target - covered <= _CATCHUP_UNDER_LOCK:
                break
            add_rows(
                index, self._vectors, self._live.rows_between(covered, target), self._should_stop
            )
            covered = target
        with self._write_mutex:
            if self._closed:
                return False
            target = self._state.covered
            add_rows(index, self._vectors, self._live.rows_between(covered, target))
            with self._index_lock.write():
                live = self._live
                self._state = IndexState(
                    index=index,
                    kind=kind,
                    params=params,
                    covered=target,
                    ntrained_on=ntrained_on,
                    dead=index.ntotal - live.count_below(target),
                )
        return True


    # ------------------------------------------------------------------ writes
    @property
    def dim(self) -> int:
        return self._dim

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.directory}: store is closed")

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
        *,
        created_at: Sequence[float] | None = None,
    ) -> list[str]:
        """Store vectors [N, D] (float32, L2-normalised by the caller) under `ids`.

        Durable on return: the fp16 rows are fsync'd, then one catalog transaction commits
        the items, their metadata and thumbnails. Re-adding an existing id replaces it (its
        old row becomes a tombstone, its old thumbnail is deleted). Duplicate ids within one
        batch are rejected (InvalidVectors, a ValueError). Returns the ids in input order.
        `created_at` (one unix time per id; default now) is for copies of existing items.
        """
        ids = check_ids(ids)
        if not ids:
            return []
        x = as_matrix(vectors, self._dim, "vectors")
        if x.shape[0] != len(ids):
            raise InvalidVectors(f"got {x.shape[0]} vectors for {len(ids)} ids")
        x16 = to_float16(x)  # [N, D]: what is stored and what every score uses
        meta_json = metadata_json(metadata, len(ids))
        thumbs = check_thumbnails(thumbnails, len(ids))
        times = None if created_at is None else [float(t) for t in created_at]
        if times is not None and len(times) != len(ids):
            raise InvalidVectors(f"got {len(times)} created_at values for {len(ids)} ids")
        self._append(ids, x16, meta_json, thumbs, times)
        return ids

    def _append(
        self,
        ids: list[str],
        x16: np.ndarray,
        meta_json: list[str | None],
        thumbnails: list[bytes | None] | None = None,
        created_at: Sequence[float] | None = None,
    ) -> None:
        """The write path of validated input: x16 [N, D] float16, unique ids."""
        exact = x16.astype(np.float32)  # [N, D]: the index holds exactly what re-scoring uses
        with self._write_mutex:
            self._check_open()
            first, pairs = append_rows(
                self.directory, self._vectors, self._catalog, ids, x16, meta_json, created_at,
                thumbnails,
            )
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
        """Tombstone `id` and delete its thumbnail; durable on return. False when the id is
        not live."""
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
            id=found.id,
            metadata=found.metadata,
            vector=vector,
            created_at=found.created_at,
            has_thumbnail=found.has_thumbnail,
        )

    def get_many(self, ids: Sequence[str], with_vectors: bool = False) -> list[Item]:
        self._check_open()
        found = [f for f in map(self._catalog.lookup, dict.fromkeys(ids)) if f is not None]
        vectors = self._vectors.gather([f.row for f in found]) if with_vectors else None  # [n, D]
        return [
            Item(
                id=f.id,
                metadata=f.metadata,
                vector=None if vectors is None else vectors[i],
                created_at=f.created_at,
                has_thumbnail=f.has_thumbnail,
            )
            for i, f in enumerate(found)
        ]

    def contains(self, ids: Sequence[str]) -> set[str]:
        self._check_open()
        return self._catalog.contains(list(ids))

    def thumbnail(self, id: str) -> bytes | None:
        self._check_open()
        return self._catalog.thumbnail(id)

    def list_items(
        self, limit: int, cursor: str | None = None, id_prefix: str | None = None
    ) -> ItemPage:
        """Live items after `cursor` in ascending id order (keyset paging, app/index/paging.py)."""
        check_limit(limit)
        if id_prefix is not None and not isinstance(id_prefix, str):
            raise InvalidVectors(f"id_prefix must be a string, got {id_prefix!r}")
        after = decode_cursor(cursor) if cursor is not None else None
        self._check_open()
        found, total = self._catalog.list_live(limit + 1, after, id_prefix or None)
        page = found[:limit]
        items = [
            Item(r.id, r.metadata, None, r.created_at, has_thumbnail=r.has_thumbnail)
            for r in page
        ]
        more = len(found) > limit
        return ItemPage(items, encode_cursor(page[-1].id) if more else None, total)

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
        filter: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """Top-k live items per query [Q, D] (float32, L2-normalised), best first.

        Scores are exact inner products with the stored fp16 vectors (cosine similarity).
        IVF-PQ fetches max(k x candidate_factor, settings.min_candidates) candidates probing
        `nprobe` lists (clamped to [1, min(max_nprobe, nlist)]; per call, the shared index is
        never mutated) and re-scores them exactly. Hits below `score_threshold` are dropped.
        With `filter`, only items whose metadata match it are candidates (module doc).
        """
        q = as_matrix(queries, self._dim, "queries")
        factor = self.settings.candidate_factor if candidate_factor is None else candidate_factor
        check_search_args(k, nprobe, factor)
        allowed: LiveRows | None = None
        if filter is not None:
            matching = self._catalog.matching_live_rows(filter)
            live = self._live
            matching = matching[matching < live.rows]
            matching = matching[live.mask()[matching]] if matching.size else matching
            if matching.size <= _EXACT_FILTER_MAX:
                scores, rows = self._exact_over(q, matching, k)
                return self._hits(scores, rows, score_threshold, with_vectors)
            allowed = LiveRows.from_rows(matching, live.rows)

        with self._index_lock.read():
            self._check_open()
            state = self._state
            if state.index.ntotal == 0:
                return [[] for _ in range(q.shape[0])]
            # Only pay for the selector while the index holds tombstones (or a filter is
            # given): a selector turns the flat search from BLAS into a per-vector loop.
            sel: faiss.IDSelectorBitmap | None = None
            if allowed is not None:
                sel = allowed.selector()
            elif state.dead:
                sel = self._live.selector()
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
            # One thread for a few queries, settings.threads for batches (module doc).
            faiss.omp_set_num_threads(
                1 if q.shape[0] < _PARALLEL_MIN_QUERIES else self._threads
            )
            # scores, rows: [Q, fetch]; rows -1 where fewer candidates exist.
            scores, rows = state.index.search(q, fetch, params=params)
            kind = state.kind

        if kind == "ivfpq":
            scores, rows = self._rescore(q, rows, k)
        return self._hits(scores, rows, score_threshold, with_vectors)

    def _exact_over(
        self, q: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of queries q [Q, D] among int64 `rows`: (scores, rows), each [Q, k'],
        k' = min(k, rows.size). Rows are immutable, so no index lock is needed."""
        nq = q.shape[0]
        if rows.size == 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        cand = self._vectors.gather(rows)  # [n, D] float32 (fp16-exact)
        scores = q @ cand.T  # [Q, n]
        kk = min(k, rows.size)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < rows.size else None
        if top is None:
            top = np.broadcast_to(np.arange(rows.size), (nq, rows.size))
        part = np.take_along_axis(scores, top, 1)
        order = np.argsort(-part, axis=1, kind="stable")
        best = np.take_along_axis(top, order, 1)
        return np.take_along_axis(scores, best, 1), rows[best]

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
        wanted = sorted_unique(rows[keep])
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
        return StoreStats(
            index_type=state.kind,
            ntotal=live.count,
            rows=live.rows,
            tombstones=live.rows - live.count,
            generation=self._snapshots.generation,
            dim=self._dim,
            training=self._worker.training,
            index_params=params,
        )

    def availability(self) -> str | None:
        """Always serving while open: the store lives in this process."""
        return None if not self._closed else f"{self.directory}: store is closed"

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> int:
        """Persist the index as `index-<gen>.faiss` + manifest; return the generation.
        Skipped when nothing changed since the last one (app/index/snapshots.py)."""
        snaps = self._snapshots
        with snaps.mutex:
            with self._index_lock.read():
                self._check_open()
                state = self._state
                if snaps.is_current(state):
                    return snaps.generation
                captured = snaps.capture(state)
            return snaps.write(captured)

    def wait_for_training(self, timeout: float | None = None) -> bool:
        """Block until no training is pending or running; False on timeout."""
        return self._worker.wait_for_training(timeout)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Protocol form of `wait_for_training`: background index builds are done."""
        return self._worker.wait_for_training(timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the worker has nothing pending or running; False on timeout."""
        return self._worker.wait_idle(timeout)


def check_identity(directory: Path, catalog: Catalog, dim: int, model_sha256: str | None) -> None:
    """Record dim and model sha256 in a new catalog; ArtifactMismatch when they differ."""
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
