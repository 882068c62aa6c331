"""Index a folder tree through the service's own embedder and store code (the library of
`python -m workbench.build_index`): ids are relative paths or content hashes, each item's
metadata is {"filename": <its file name>} as POST /index stores an upload's, and ids already
stored are skipped, so an interrupted run continues where it stopped."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

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


async def index_folder(
    root: Path,
    data_dir: Path | None = None,
    batch: int = 16,
    id_mode: str = "relpath",
    wait_training: bool = False,
) -> dict[str, Any]:
    """Index every image under `root` into the store of `data_dir` (default: the settings'),
    skipping ids already stored; returns the summary the CLI prints."""
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    runtime = Runtime.start(settings, Metrics())
    try:
        paths = find_images(root)
        if id_mode == "relpath":
            ids = [p.relative_to(root).as_posix() for p in paths]
        else:
            ids = [content_id(p.read_bytes()) for p in paths]
        present = runtime.store.contains(ids)
        todo = [(p, i) for p, i in zip(paths, ids, strict=True) if i not in present]
        logger.info(
            "%d images found, %d already stored, %d to index", len(paths), len(present), len(todo)
        )
        bar = _progress(len(todo))
        start, done, failed = time.perf_counter(), 0, 0
        for lo in range(0, len(todo), batch):
            chunk = todo[lo : lo + batch]
            ok, bad = await _index_chunk(runtime, [c[0] for c in chunk], [c[1] for c in chunk])
            done, failed = done + ok, failed + bad
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - start
        if wait_training:
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
