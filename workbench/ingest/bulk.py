"""Bulk ingest that scales out: embed shards of a listing to Parquet, then load the shards into
a FAISS store or bulk-import them into Milvus. The CLIs are workbench/ingest/embed_shard.py and
workbench/ingest/load_shards.py; this module is the library under them.

Embedding (`embed_shard`). A listing is a text file of image paths (one per line, relative to
a root folder) or a folder tree (listed in sorted order). Shard i of n takes the contiguous
block of entries [i N / n, (i + 1) N / n), so n jobs cover the listing exactly once whatever
runs them: a shell loop, Kubernetes indexed Jobs (JOB_COMPLETION_INDEX), a Slurm array
(SLURM_ARRAY_TASK_ID). Each shard writes `shard-IIIII-of-NNNNN/part-KKKKKK.parquet`, part k
holding entries [k P, (k + 1) P) of the shard (P = --part-size), each part written to a temp
file, fsync'd and renamed: a killed job re-run with the same arguments skips the parts that
exist and redoes at most one. `_SUCCESS.json` marks a finished shard. Embedding goes through
the service's own artifact, preprocessing, batcher and embedder (`app.runtime.Inference`), so
what is ingested is what the service computes for an upload; thumbnails are the service's too.

Part schema (PART_SCHEMA): id, path, vector (list<float16>: the fp16 row the store keeps),
metadata (JSON text or null), thumbnail (JPEG bytes or null), created_at (unix time). File
metadata (`simsearch` key) records the model sha256, dim, shard, part, listing digest, and the
entries that failed to decode (skipped, with the reason).

Loading. FAISS (`load_faiss`): every part goes through `app.index.bulk.BulkWriter` (the store's
durable write protocol without a live index), then one `FaissStore.open` trains IVF-PQ over all
rows and snapshots it. Milvus (`load_milvus_bulk`): each part is rewritten in the collection's
own shape (vector as list<float32>, thumbnail as base64 text, has_metadata) into a folder the
Milvus server reads (its object storage: a MinIO/S3 bucket in a cluster; `localStorage.path`,
<data-dir>/data, on the standalone `milvus` wheel of workbench/servers/milvus_server.py), and
imported with Milvus's bulk-insert API (`utility.do_bulk_insert`, one task per file), then indexed.
Both loaders record loaded parts in a state file and skip them when re-run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts import fsync_dir

logger = logging.getLogger("bulk_ingest")

PART_GLOB = "shard-*-of-*/part-*.parquet"
SUCCESS_FILE = "_SUCCESS.json"
META_KEY = b"simsearch"


# ---------------------------------------------------------------------------- listing, shards
def shard_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """[lo, hi) of shard `index` of `count` over `total` entries (contiguous, sizes differ by
    at most one; every entry in exactly one shard)."""
    return total * index // count, total * (index + 1) // count


def read_listing(listing: Path, root: Path | None) -> tuple[Path, list[str]]:
    """(root, relative POSIX paths). A folder lists its images; a file lists one path per line
    (blank lines and # comments skipped), relative to `root` (default: the file's folder)."""
    if listing.is_dir():
        from workbench.folder_index import find_images

        base = root or listing
        return base, [p.relative_to(base).as_posix() for p in find_images(listing)]
    lines = listing.read_text(encoding="utf-8").splitlines()
    entries = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    return root or listing.parent, entries


def listing_digest(entries: Sequence[str]) -> str:
    h = hashlib.sha256()
    for e in entries:
        h.update(e.encode("utf-8") + b"\n")
    return h.hexdigest()


def shard_dir(out: Path, index: int, count: int) -> Path:
    return out / f"shard-{index:05d}-of-{count:05d}"


# ---------------------------------------------------------------------------- parquet parts
def part_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("vector", pa.list_(pa.float16())),  # [D] fp16: the row the store keeps
            ("metadata", pa.string()),  # JSON object text, or null
            ("thumbnail", pa.binary()),  # JPEG, or null
            ("created_at", pa.float64()),
        ]
    )


def write_parquet_atomic(table: Any, path: Path) -> None:
    """Write to a temp file beside `path`, fsync, rename, fsync the folder: a part either
    exists whole or not at all."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def part_info(path: Path) -> dict[str, Any]:
    """The `simsearch` record of a part file (model, dim, shard, part, failures)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[META_KEY])


def find_parts(inputs: Sequence[Path]) -> list[Path]:
    """Part files under shard folders or their parent folders, in shard then part order."""
    parts: list[Path] = []
    for root in inputs:
        if root.is_file():
            parts.append(root)
        elif root.name.startswith("shard-"):
            parts.extend(sorted(root.glob("part-*.parquet")))
        else:
            parts.extend(sorted(root.glob(PART_GLOB)))
    return parts


# ---------------------------------------------------------------------------- embedding job
@dataclass
class ShardReport:
    shard: str
    entries: int
    parts: int
    parts_skipped: int
    embedded: int
    failed: int
    seconds: float
    startup_s: float
    cpu_s_per_image: float
    images_per_s: float
    out: str
    failures: list[dict[str, str]] = field(default_factory=list)


def _read(root: Path, rel: str) -> bytes:
    return (root / rel).read_bytes()


async def _embed_part(
    inference: Any, settings: Any, root: Path, entries: list[str], id_mode: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Embed one part's entries; a failing image is skipped alone (retried one by one).

    One decode per image serves its descriptor and its thumbnail (a view of the embedder's
    working image, as POST /index makes it), made in the decode pool while other images infer.
    """
    from app.errors import SimSearchError
    from app.thumbnails import working_thumbnail

    embedder = inference.embedder
    blobs: list[bytes | None] = []
    failures: list[dict[str, str]] = []
    for rel in entries:
        try:
            blobs.append(_read(root, rel))
        except OSError as exc:
            blobs.append(None)
            failures.append({"path": rel, "error": f"{type(exc).__name__}: {exc}"})
    ok = [(rel, b) for rel, b in zip(entries, blobs, strict=True) if b is not None]
    thumb_settings = settings.thumbnails
    views = None
    if thumb_settings.enabled:
        views = {"thumbnail": lambda d: working_thumbnail(d.pixels, thumb_settings, d.upload_size)}
    results: list[tuple[np.ndarray, bytes | None] | None]
    try:
        vectors, per_image = await embedder.embed_uploads([b for _, b in ok], views=views)
        results = [(v, p.get("thumbnail")) for v, p in zip(vectors, per_image, strict=True)]
    except SimSearchError:
        results = []
        for rel, blob in ok:
            try:
                one, per = await embedder.embed_uploads([blob], views=views)
                results.append((one[0], per[0].get("thumbnail")))
            except SimSearchError as exc:
                results.append(None)
                failures.append({"path": rel, "error": str(exc)})
                logger.warning("skipped %s: %s", rel, exc)
    kept = [
        (rel, blob, res[0]) for (rel, blob), res in zip(ok, results, strict=True) if res is not None
    ]
    thumbs: list[bytes | None] = [res[1] for res in results if res is not None]
    rows = []
    seen: set[str] = set()
    now = time.time()
    for (rel, blob, vec), thumb in zip(kept, thumbs, strict=True):
        item_id = rel if id_mode == "relpath" else hashlib.sha256(blob).hexdigest()
        if item_id in seen:  # the same bytes twice under --id-mode sha256: one item
            continue
        seen.add(item_id)
        rows.append(
            {
                "id": item_id,
                "path": rel,
                "vector": vec.astype(np.float16),
                # The key POST /index and build_index.py store: one name everywhere.
                "metadata": json.dumps({"filename": Path(rel).name}),
                "thumbnail": thumb,
                "created_at": now,
            }
        )
    return rows, failures


def _table(rows: list[dict[str, Any]], info: dict[str, Any]) -> Any:
    import pyarrow as pa

    schema = part_schema().with_metadata({META_KEY: json.dumps(info).encode("utf-8")})
    dim = int(info["dim"])
    flat = (
        np.stack([r["vector"] for r in rows]).reshape(-1) if rows else np.zeros(0, dtype=np.float16)
    )
    offsets = np.arange(0, len(rows) * dim + 1, dim, dtype=np.int32)
    vectors = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float16()))
    return pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "path": pa.array([r["path"] for r in rows], pa.string()),
            "vector": vectors,
            "metadata": pa.array([r["metadata"] for r in rows], pa.string()),
            "thumbnail": pa.array([r["thumbnail"] for r in rows], pa.binary()),
            "created_at": pa.array([r["created_at"] for r in rows], pa.float64()),
        },
        schema=schema,
    )


def embed_shard(
    listing: Path,
    out: Path,
    shard: tuple[int, int],
    settings: Any,
    root: Path | None = None,
    part_size: int = 1000,
    id_mode: str = "relpath",
    progress: Callable[[int], None] | None = None,
    stop_after_parts: int | None = None,
) -> ShardReport:
    """Embed shard `shard` = (i, n) of `listing` into Parquet parts under `out` (module doc).

    Resumable: parts already written are skipped. `stop_after_parts` stops after writing that
    many new parts (what an interrupted job leaves; for tests and trial runs).
    """
    from app.metrics import Metrics
    from app.runtime import Inference

    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    if id_mode not in ("relpath", "sha256"):
        raise ValueError(f"id_mode must be relpath or sha256, got {id_mode!r}")
    index, count = shard
    base, entries = read_listing(listing, root)
    digest = listing_digest(entries)
    lo, hi = shard_bounds(len(entries), index, count)
    mine = entries[lo:hi]
    folder = shard_dir(out, index, count)
    folder.mkdir(parents=True, exist_ok=True)
    n_parts = (len(mine) + part_size - 1) // part_size
    todo = [k for k in range(n_parts) if not (folder / f"part-{k:06d}.parquet").exists()]
    for k in range(n_parts):
        path = folder / f"part-{k:06d}.parquet"
        if k not in todo:
            info = part_info(path)
            if info.get("listing_sha256") != digest or info.get("part_size") != part_size:
                raise ValueError(
                    f"{path} was written for another listing or part size; use a new output "
                    "folder (or remove the old shards)"
                )
    logger.info(
        "shard %d/%d: entries [%d, %d) of %d, %d parts (%d already written)",
        index,
        count,
        lo,
        hi,
        len(entries),
        n_parts,
        n_parts - len(todo),
    )
    embedded = failed = written = 0
    failures: list[dict[str, str]] = []
    startup_s = 0.0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if todo:
        inference = Inference.start(settings, Metrics())
        startup_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # images/s counts embedding, not loading the model
        cpu0 = time.process_time()
        try:
            meta = inference.meta
            for k in todo:
                if stop_after_parts is not None and written >= stop_after_parts:
                    break
                chunk = mine[k * part_size : (k + 1) * part_size]
                rows, bad = asyncio.run(_embed_part(inference, settings, base, chunk, id_mode))
                info = {
                    "model_sha256": meta.onnx_sha256,
                    "model_name": meta.name,
                    "dim": meta.embedding_dim,
                    "shard": f"{index}/{count}",
                    "part": k,
                    "part_size": part_size,
                    "first_entry": lo + k * part_size,
                    "entries": len(chunk),
                    "listing_sha256": digest,
                    "failed": bad,
                }
                write_parquet_atomic(_table(rows, info), folder / f"part-{k:06d}.parquet")
                written += 1
                embedded += len(rows)
                failed += len(bad)
                failures.extend(bad)
                if progress is not None:
                    progress(len(chunk))
                elapsed = time.perf_counter() - t0
                left = len(todo) - written
                logger.info(
                    "shard %d/%d part %d: %d embedded, %d failed; %.1f img/s, ~%.0f s left",
                    index,
                    count,
                    k,
                    len(rows),
                    len(bad),
                    embedded / max(elapsed, 1e-9),
                    left * elapsed / written,
                )
        finally:
            inference.close()
    seconds = time.perf_counter() - t0
    # CPU seconds of every thread of this process (decode, ORT, thumbnails, Parquet): what an
    # image costs a core, robust to other load on a shared machine where wall time is not.
    cpu_s = time.process_time() - cpu0
    complete = all((folder / f"part-{k:06d}.parquet").exists() for k in range(n_parts))
    report = ShardReport(
        shard=f"{index}/{count}",
        entries=len(mine),
        parts=n_parts,
        parts_skipped=n_parts - len(todo),
        embedded=embedded,
        failed=failed,
        seconds=round(seconds, 2),
        startup_s=round(startup_s, 2),
        cpu_s_per_image=round(cpu_s / embedded, 4) if embedded else 0.0,
        images_per_s=round(embedded / seconds, 2) if embedded and seconds > 0 else 0.0,
        out=str(folder),
        failures=failures,
    )
    if complete:
        (folder / SUCCESS_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report


# ---------------------------------------------------------------------------- reading parts
@dataclass
class PartBatch:
    ids: list[str]
    vectors: np.ndarray  # [N, D] float32 (fp16-rounded values)
    metadata: list[dict[str, Any] | None]
    thumbnails: list[bytes | None]
    created_at: list[float]


def read_part(path: Path, batch_rows: int = 4096) -> Iterator[PartBatch]:
    """Batches of one part file, at most `batch_rows` rows each (bounded memory)."""
    import pyarrow.parquet as pq

    info = part_info(path)
    dim = int(info["dim"])
    with pq.ParquetFile(path) as pf:
        for rb in pf.iter_batches(batch_size=batch_rows):
            col = rb.column("vector")
            flat = col.values.to_numpy(zero_copy_only=False)
            vectors = flat.reshape(len(rb), dim).astype(np.float32)
            metas = rb.column("metadata").to_pylist()
            yield PartBatch(
                ids=rb.column("id").to_pylist(),
                vectors=vectors,
                metadata=[None if m is None else json.loads(m) for m in metas],
                thumbnails=rb.column("thumbnail").to_pylist(),
                created_at=rb.column("created_at").to_pylist(),
            )


def check_parts(parts: Sequence[Path], model_sha256: str | None) -> int:
    """The parts' common dim; ValueError if they disagree with each other or the model."""
    if not parts:
        raise ValueError("no part files found (expected shard-*-of-*/part-*.parquet)")
    dims = set()
    shas = set()
    for p in parts:
        info = part_info(p)
        dims.add(int(info["dim"]))
        shas.add(info["model_sha256"])
    if len(dims) != 1 or len(shas) != 1:
        raise ValueError(f"parts come from different models or dims: {sorted(shas)} {dims}")
    if model_sha256 is not None and model_sha256 not in shas:
        raise ValueError(
            f"parts were embedded by model {next(iter(shas))[:12]}... but the target expects "
            f"{model_sha256[:12]}...; descriptors of different models are not comparable"
        )
    return dims.pop()


class LoadState:
    """Which parts a loader has finished (a JSON file), so a re-run skips them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            self.done = set(json.loads(path.read_text())["parts"])

    @staticmethod
    def key(part: Path) -> str:
        return f"{part.parent.name}/{part.name}"

    def mark(self, part: Path) -> None:
        self.done.add(self.key(part))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"parts": sorted(self.done)}))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------- FAISS loader
@dataclass
class LoadReport:
    target: str
    parts: int
    parts_skipped: int
    rows: int
    write_s: float
    index_s: float
    rows_per_s: float
    ntotal: int
    index_type: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        target: str,
        parts: int,
        parts_skipped: int,
        rows: int,
        write_s: float,
        index_s: float,
        stats: Any,
        extra: dict[str, Any],
    ) -> LoadReport:
        """One report from a loader's counts, its timings and the store's StoreStats after."""
        return cls(
            target=target,
            parts=parts,
            parts_skipped=parts_skipped,
            rows=rows,
            write_s=round(write_s, 3),
            index_s=round(index_s, 3),
            rows_per_s=round(rows / write_s, 1) if rows and write_s > 0 else 0.0,
            ntotal=stats.ntotal,
            index_type=stats.index_type,
            extra=extra,
        )


def load_faiss(
    parts: Sequence[Path],
    store_dir: Path,
    index_settings: Any,
    model_sha256: str | None = None,
    state_file: Path | None = None,
) -> LoadReport:
    """Append every part to the FAISS store in `store_dir` (durable, no live index), then open
    it once: the index is built over all rows (IVF-PQ when there are enough) and snapshotted."""
    from app.index.bulk import BulkWriter
    from app.index.faiss_store import FaissStore

    dim = check_parts(parts, model_sha256)
    sha = model_sha256 or part_info(parts[0])["model_sha256"]
    # Inside the store directory: a new (or removed and re-created) store starts afresh.
    store_dir.mkdir(parents=True, exist_ok=True)
    state = LoadState(state_file or store_dir / "bulk-load.json")
    todo = [p for p in parts if LoadState.key(p) not in state.done]
    rows = 0
    t0 = time.perf_counter()
    with BulkWriter.open(store_dir, dim, sha) as writer:
        for part in todo:
            for b in read_part(part):
                rows += writer.append(b.ids, b.vectors, b.metadata, b.thumbnails, b.created_at)
            state.mark(part)
            logger.info("loaded %s (%d rows so far)", part, rows)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = FaissStore.open(store_dir, dim, index_settings, model_sha256=sha)
    try:
        store.wait_for_index()
        stats = store.stats()
    finally:
        store.close()
    index_s = time.perf_counter() - t0
    return LoadReport.of(
        str(store_dir),
        len(parts),
        len(parts) - len(todo),
        rows,
        write_s,
        index_s,
        stats,
        {"factory": stats.index_params.get("factory")},
    )


# ---------------------------------------------------------------------------- Milvus loader
def milvus_table(part: Path) -> Any:
    """A part rewritten in the Milvus collection's shape (app/index/milvus_store.py schema):
    id, vector list<float32>, metadata (JSON text; {} when none), has_metadata, thumbnail
    (base64 text, "" when none), created_at."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.index.milvus_store import MAX_THUMBNAIL_BYTES

    t = pq.read_table(part)
    metas = t.column("metadata").to_pylist()
    thumbs = t.column("thumbnail").to_pylist()
    vec = t.column("vector").combine_chunks()
    offsets = vec.offsets
    values = pa.array(vec.values.to_numpy(zero_copy_only=False).astype(np.float32))
    return pa.table(
        {
            "id": t.column("id"),
            "vector": pa.ListArray.from_arrays(offsets, values),
            "metadata": pa.array(["{}" if m is None else m for m in metas], pa.string()),
            "has_metadata": pa.array([m is not None for m in metas], pa.bool_()),
            "thumbnail": pa.array(
                [
                    ""
                    if b is None or len(b) > MAX_THUMBNAIL_BYTES
                    else base64.b64encode(b).decode("ascii")
                    for b in thumbs
                ],
                pa.string(),
            ),
            "created_at": t.column("created_at"),
        }
    )


def _wait_import(task_id: int, using: str, timeout: float) -> Any:
    from pymilvus import BulkInsertState, utility

    deadline = time.monotonic() + timeout
    while True:
        state = utility.get_bulk_insert_state(task_id, using=using)
        if state.state == BulkInsertState.ImportCompleted:
            return state
        if state.state in (BulkInsertState.ImportFailed, BulkInsertState.ImportFailedAndCleaned):
            raise RuntimeError(f"milvus bulk insert task {task_id} failed: {state.failed_reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"milvus bulk insert task {task_id} not done after {timeout} s")
        time.sleep(0.5)


def load_milvus_bulk(
    parts: Sequence[Path],
    store_settings: Any,
    index_settings: Any,
    files_dir: Path,
    server_prefix: str | None = None,
    model_sha256: str | None = None,
    state_file: Path | None = None,
    wait_index: bool = True,
    timeout: float = 3600.0,
) -> LoadReport:
    """Bulk-import every part into the Milvus collection of `store_settings` (module doc).

    `files_dir`: a folder the server reads import files from, as this machine sees it;
    `server_prefix`: the same folder as the server names it (default: the absolute
    `files_dir`, right for the standalone server with local storage on this machine). The
    collection is created (or checked) by `MilvusStore.open`, so the model check and schema
    are the service's.
    """
    import warnings

    from pymilvus import connections, utility

    from app.index.milvus_store import MilvusStore

    # pymilvus 2.6 marks the ORM calls deprecated; MilvusClient's bulk import speaks the REST
    # API of Milvus 2.4+, while `do_bulk_insert` (gRPC Import) also works on 2.3.
    warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")

    dim = check_parts(parts, model_sha256)
    sha = model_sha256 or part_info(parts[0])["model_sha256"]
    collection = store_settings.collection
    state = LoadState(state_file or files_dir / f"bulk-load-{collection}.json")
    todo = [p for p in parts if LoadState.key(p) not in state.done]
    prefix = server_prefix or str(files_dir.resolve())
    store = MilvusStore.open(store_settings, dim, index_settings, model_sha256=sha)
    alias = f"bulk-{os.getpid()}-{id(store)}"
    connections.connect(
        alias=alias,
        uri=store_settings.uri,
        token=store_settings.token.get_secret_value(),
        db_name=store_settings.database,
        timeout=store_settings.timeout_s,
    )
    rows = 0
    convert_s = 0.0
    t0 = time.perf_counter()
    try:
        for part in todo:
            tc = time.perf_counter()
            name = f"{collection}-{part.parent.name}-{part.stem}.parquet"
            table = milvus_table(part)
            write_parquet_atomic(table, files_dir / name)
            convert_s += time.perf_counter() - tc
            task = utility.do_bulk_insert(
                collection, files=[f"{prefix.rstrip('/')}/{name}"], using=alias
            )
            done = _wait_import(task, alias, timeout)
            rows += int(done.row_count)
            state.mark(part)
            with contextlib.suppress(OSError):
                (files_dir / name).unlink()
            logger.info("imported %s (%d rows so far)", part, rows)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if wait_index:
            store.wait_for_index(timeout=timeout)
        index_s = time.perf_counter() - t0
        stats = store.stats()
    finally:
        connections.disconnect(alias)
        store.close()
    return LoadReport.of(
        f"{store_settings.uri}/{collection}",
        len(parts),
        len(parts) - len(todo),
        rows,
        write_s,
        index_s,
        stats,
        {"convert_s": round(convert_s, 3)},
    )


def load_milvus_upsert(
    parts: Sequence[Path],
    store_settings: Any,
    index_settings: Any,
    batch: int = 500,
    model_sha256: str | None = None,
) -> LoadReport:
    """The same parts through `MilvusStore.add` (upserts of `batch` rows; 1 = per row): the
    path the bulk import is measured against."""
    from app.index.milvus_store import MilvusStore

    dim = check_parts(parts, model_sha256)
    sha = model_sha256 or part_info(parts[0])["model_sha256"]
    store = MilvusStore.open(store_settings, dim, index_settings, model_sha256=sha)
    rows = 0
    t0 = time.perf_counter()
    try:
        for part in parts:
            for b in read_part(part, batch_rows=batch):
                store.add(b.ids, b.vectors, b.metadata, b.thumbnails, created_at=b.created_at)
                rows += len(b.ids)
        write_s = time.perf_counter() - t0
        stats = store.stats()
    finally:
        store.close()
    return LoadReport.of(
        f"{store_settings.uri}/{store_settings.collection}",
        len(parts),
        0,
        rows,
        write_s,
        0.0,
        stats,
        {"batch": batch},
    )
