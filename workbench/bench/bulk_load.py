#!/usr/bin/env python
"""Loading shards: bulk paths against per-row and batched inserts, FAISS and Milvus; JSON.

    python -m workbench.bench.bulk_load --n 20000 --dim 1280 [--milvus-uri URI --files-dir DIR]

Synthetic Parquet parts (workbench/ingest/bulk.py format: unit vectors, {"path": ...} metadata,
--thumb-bytes of thumbnail per row) of --part-rows rows are written once, then loaded by:
  faiss_per_row      FaissStore.add, one row per call (durable: fsync + commit each), on the
                     first --per-row rows
  faiss_batched      FaissStore.add, --batch rows per call (live flat index below the IVF
                     threshold)
  faiss_bulk         load_faiss: app/index/bulk.py writes + one open that builds the index
  milvus_per_row     MilvusStore.add of one row (one upsert each), first --per-row rows
  milvus_batched     load_milvus_upsert, --batch rows per upsert
  milvus_bulk        load_milvus_bulk: Milvus bulk insert, one import task per part
Each Milvus method writes a fresh collection (index HNSW, the store's default), waits for
Milvus to index it, and drops it. Rates are rows per second of the write phase; index_s is
the index build after it (FAISS: IVF-PQ training + add; Milvus: flush + build + handover).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import log, rss


def write_parts(out: Path, n: int, dim: int, part_rows: int, thumb_bytes: int) -> list[Path]:
    from workbench.bench.synthetic import clustered_unit_vectors
    from workbench.ingest.bulk import _table, shard_dir, write_parquet_atomic

    x16 = clustered_unit_vectors(n, dim, seed=3)  # [n, D] float16
    rng = np.random.default_rng(4)
    folder = shard_dir(out, 0, 1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, n, part_rows)):
        stop = min(n, start + part_rows)
        rows = [
            {
                "id": f"img/{i:09d}.jpg",
                "path": f"img/{i:09d}.jpg",
                "vector": x16[i],
                "metadata": json.dumps({"path": f"img/{i:09d}.jpg"}),
                "thumbnail": rng.bytes(thumb_bytes) if thumb_bytes else None,
                "created_at": 1.7e9 + i,
            }
            for i in range(start, stop)
        ]
        info = {
            "model_sha256": "bench" + "0" * 59,
            "dim": dim,
            "shard": "0/1",
            "part": k,
            "part_size": part_rows,
            "listing_sha256": "",
            "failed": [],
        }
        path = folder / f"part-{k:06d}.parquet"
        write_parquet_atomic(_table(rows, info), path)
        paths.append(path)
    return paths


def faiss_methods(parts: list[Path], work: Path, n: int, per_row: int, batch: int) -> dict:
    from app.config import FaissStoreSettings
    from app.index.faiss_store import FaissStore
    from workbench.ingest.bulk import load_faiss, read_part

    settings = FaissStoreSettings()
    out: dict[str, Any] = {}
    batches = [b for p in parts for b in read_part(p, batch_rows=batch)]
    d = batches[0].vectors.shape[1]

    store = FaissStore.open(work / "faiss-per-row", d, settings)
    b0 = batches[0]
    t0 = time.perf_counter()
    for i in range(min(per_row, len(b0.ids))):
        store.add([b0.ids[i]], b0.vectors[i : i + 1], [b0.metadata[i]], [b0.thumbnails[i]])
    s = time.perf_counter() - t0
    store.close()
    out["faiss_per_row"] = {
        "rows": min(per_row, len(b0.ids)),
        "write_s": round(s, 3),
        "rows_per_s": round(min(per_row, len(b0.ids)) / s, 1),
    }
    log(f"bulk-load: faiss per row {out['faiss_per_row']}")

    store = FaissStore.open(work / "faiss-batched", d, settings)
    t0 = time.perf_counter()
    for b in batches:
        store.add(b.ids, b.vectors, b.metadata, b.thumbnails)
    s = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.wait_for_index()
    index_s = time.perf_counter() - t1
    kind = store.stats().index_type
    store.close()
    out["faiss_batched"] = {
        "rows": n,
        "batch": batch,
        "write_s": round(s, 3),
        "rows_per_s": round(n / s, 1),
        "index_s": round(index_s, 3),
        "index_type": kind,
    }
    log(f"bulk-load: faiss batched {out['faiss_batched']}")
    del batches

    report = load_faiss(parts, work / "faiss-bulk", settings, model_sha256=None)
    out["faiss_bulk"] = {
        "rows": report.rows,
        "write_s": report.write_s,
        "rows_per_s": report.rows_per_s,
        "index_s": report.index_s,
        "index_type": report.index_type,
    }
    log(f"bulk-load: faiss bulk {out['faiss_bulk']}")
    return out


def milvus_methods(
    parts: list[Path], uri: str, files_dir: Path, n: int, per_row: int, batch: int
) -> dict:
    from pymilvus import MilvusClient

    from app.config import IndexSettings, MilvusSettings
    from app.index.milvus_store import MilvusStore
    from workbench.ingest.bulk import load_milvus_bulk, load_milvus_upsert, read_part

    def settings(name: str) -> MilvusSettings:
        return MilvusSettings(uri=uri, collection=name, timeout_s=120.0)

    def drop(name: str) -> None:
        client = MilvusClient(uri=uri, timeout=60)
        try:
            if client.has_collection(name):
                client.drop_collection(name)
        finally:
            client.close()

    out: dict[str, Any] = {}
    tag = f"bench_{os.getpid()}"
    b0 = next(read_part(parts[0], batch_rows=per_row))
    name = f"{tag}_per_row"
    store = MilvusStore.open(settings(name), b0.vectors.shape[1], IndexSettings())
    try:
        t0 = time.perf_counter()
        for i in range(len(b0.ids)):
            store.add([b0.ids[i]], b0.vectors[i : i + 1], [b0.metadata[i]], [b0.thumbnails[i]])
        s = time.perf_counter() - t0
    finally:
        store.close()
        drop(name)
    out["milvus_per_row"] = {
        "rows": len(b0.ids),
        "write_s": round(s, 3),
        "rows_per_s": round(len(b0.ids) / s, 1),
    }
    log(f"bulk-load: milvus per row {out['milvus_per_row']}")

    name = f"{tag}_batched"
    try:
        r = load_milvus_upsert(parts, settings(name), IndexSettings(), batch=batch)
        store = MilvusStore.open(settings(name), b0.vectors.shape[1], IndexSettings())
        t0 = time.perf_counter()
        store.wait_for_index(timeout=3600)
        index_s = time.perf_counter() - t0
        store.close()
    finally:
        drop(name)
    out["milvus_batched"] = {
        "rows": r.rows,
        "batch": batch,
        "write_s": r.write_s,
        "rows_per_s": r.rows_per_s,
        "index_s": round(index_s, 3),
    }
    log(f"bulk-load: milvus batched {out['milvus_batched']}")

    name = f"{tag}_bulk"
    try:
        r = load_milvus_bulk(
            parts, settings(name), IndexSettings(), files_dir, state_file=files_dir / f"{name}.json"
        )
    finally:
        drop(name)
        (files_dir / f"{name}.json").unlink(missing_ok=True)
    out["milvus_bulk"] = {
        "rows": r.rows,
        "write_s": r.write_s,
        "rows_per_s": r.rows_per_s,
        "convert_s": r.extra.get("convert_s"),
        "index_s": r.index_s,
        "parts": r.parts,
    }
    log(f"bulk-load: milvus bulk {out['milvus_bulk']}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--part-rows", type=int, default=10_000)
    p.add_argument("--per-row", type=int, default=200)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--thumb-bytes", type=int, default=0)
    p.add_argument("--milvus-uri")
    p.add_argument("--files-dir", type=Path, help="where the Milvus server reads imports")
    p.add_argument("--skip-faiss", action="store_true")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bulk-", dir=args.workdir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        parts = write_parts(work / "shards", args.n, args.dim, args.part_rows, args.thumb_bytes)
        result: dict[str, Any] = {
            "n": args.n,
            "dim": args.dim,
            "part_rows": args.part_rows,
            "thumb_bytes": args.thumb_bytes,
            "write_parts_s": round(time.perf_counter() - t0, 2),
            "parquet_bytes_per_row": round(sum(x.stat().st_size for x in parts) / args.n, 1),
        }
        if not args.skip_faiss:
            result["faiss"] = faiss_methods(parts, work, args.n, args.per_row, args.batch)
        if args.milvus_uri:
            if args.files_dir is None:
                p.error("--milvus-uri needs --files-dir")
            args.files_dir.mkdir(parents=True, exist_ok=True)
            result["milvus"] = milvus_methods(
                parts, args.milvus_uri, args.files_dir, args.n, args.per_row, args.batch
            )
        result["peak_rss_mib"] = rss().get("peak_mib")
        result["load"] = os.getloadavg()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
