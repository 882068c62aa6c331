#!/usr/bin/env python
"""Bulk-index a folder tree through the service's own embedder and store code.

    python scripts/build_index.py DIR [--data-dir index_data] [--batch 16]

Ids are paths relative to DIR (POSIX separators) unless --id-mode sha256; each item's metadata is
{"filename": <its file name>}, as POST /index stores an upload's. Resumable: ids already
stored are skipped, so an interrupted run continues where it stopped. Do not run it while the
service is serving the same data directory: one process owns a store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from app.errors import SimSearchError
from app.inference.preprocess import IMAGE_SUFFIXES
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.service import content_id

logger = logging.getLogger("build_index")


def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _progress(total: int):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="img", dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm ships with the dev and train extras
        return None


async def _index_chunk(runtime: Runtime, paths: list[Path], ids: list[str]) -> tuple[int, int]:
    """Index one chunk; if any file fails, retry file by file so one bad image skips alone."""
    blobs = [p.read_bytes() for p in paths]
    # The key an upload through POST /index gets (keep_filenames): one name everywhere.
    metas = [{"filename": p.name} for p in paths]
    try:
        await runtime.service.index_images(blobs, ids, metas)
        return len(paths), 0
    except SimSearchError:
        ok = failed = 0
        for blob, item_id, meta, path in zip(blobs, ids, metas, paths, strict=True):
            try:
                await runtime.service.index_images([blob], [item_id], [meta])
                ok += 1
            except SimSearchError as exc:
                logger.warning("skipped %s: %s", path, exc)
                failed += 1
        return ok, failed


async def run(args: argparse.Namespace) -> dict[str, float]:
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    runtime = Runtime.start(settings, Metrics())
    try:
        paths = find_images(args.root)
        if args.id_mode == "relpath":
            ids = [p.relative_to(args.root).as_posix() for p in paths]
        else:
            ids = [content_id(p.read_bytes()) for p in paths]
        present = runtime.store.contains(ids)
        todo = [(p, i) for p, i in zip(paths, ids, strict=True) if i not in present]
        logger.info(
            "%d images found, %d already stored, %d to index", len(paths), len(present), len(todo)
        )
        bar = _progress(len(todo))
        start, done, failed = time.perf_counter(), 0, 0
        for lo in range(0, len(todo), args.batch):
            chunk = todo[lo : lo + args.batch]
            ok, bad = await _index_chunk(runtime, [c[0] for c in chunk], [c[1] for c in chunk])
            done, failed = done + ok, failed + bad
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - start
        if args.wait_training:
            runtime.store.wait_for_index(timeout=3600)
        stats = runtime.store.stats()
        return {
            "found": len(paths),
            "skipped_existing": len(present),
            "indexed": done,
            "failed": failed,
            "seconds": round(elapsed, 2),
            "images_per_s": round(done / elapsed, 2) if elapsed > 0 and done else 0.0,
            "ntotal": stats.ntotal,
            "index_type": stats.index_type,
        }
    finally:
        runtime.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("root", type=Path, help="folder tree of images")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: SIMSEARCH_DATA_DIR or index_data)",
    )
    parser.add_argument("--batch", type=int, default=16, help="images per durable store add")
    parser.add_argument("--id-mode", choices=("relpath", "sha256"), default="relpath")
    parser.add_argument(
        "--wait-training",
        action="store_true",
        help="wait for background index builds (FAISS IVF-PQ training) to finish before exiting",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    import json

    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    from scripts.cli_errors import run_cli

    raise SystemExit(run_cli(main))
