"""Index a folder of images into a running server: batches sent concurrently, progress as it
goes, resumable (ids already stored are skipped), retries when the server is busy, and a bad
image fails alone instead of taking its whole batch down."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from simsearch_client.client import ApiError, SimSearchClient

logger = logging.getLogger(__name__)

# What the server accepts (app.inference.preprocess.IMAGE_SUFFIXES; the client imports nothing
# of the server, and a test holds the two equal).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
IdScheme = Literal["path", "sha256"]
# Statuses worth retrying: the server is starting, overloaded or past its deadline.
RETRY_STATUSES = frozenset({503})


@dataclass
class BulkReport:
    total: int = 0
    indexed: int = 0
    skipped: int = 0
    replaced: int = 0
    # (file, reason) of each image that could not be indexed.
    failed: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        done = self.indexed + self.skipped + len(self.failed)
        return (
            f"{done}/{self.total} done: {self.indexed} indexed, {self.skipped} skipped "
            f"(already stored), {len(self.failed)} failed"
        )


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive), sorted so runs are reproducible."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def item_id(path: Path, folder: Path, scheme: IdScheme, prefix: str) -> str:
    """`path`: the path relative to the folder (POSIX separators); `sha256`: of the bytes,
    the same id the server gives an upload without one."""
    if scheme == "sha256":
        return prefix + hashlib.sha256(path.read_bytes()).hexdigest()
    return prefix + path.relative_to(folder).as_posix()


def _send(
    client: SimSearchClient,
    batch: Sequence[tuple[Path, str]],
    metadata: dict[str, Any] | None,
    retries: int,
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(indexed ids, replaced ids, failures) of one batch. A 4xx for the batch is retried
    file by file so only the bad files fail."""
    for attempt in range(retries + 1):
        try:
            result = client.index_images(
                [p for p, _ in batch],
                ids=[i for _, i in batch],
                metadata=[metadata] * len(batch) if metadata else None,
                # The folder loader never reads the per-file duplicate report: skip its cost
                # (GET /duplicates finds the copies afterwards).
                check_duplicates=False,
            )
            return result.ids, result.replaced, []
        except ApiError as exc:
            if exc.status in RETRY_STATUSES and attempt < retries:
                time.sleep(exc.retry_after or min(2.0**attempt, 30.0))
                continue
            if 400 <= exc.status < 500 and exc.status not in (401, 403) and len(batch) > 1:
                ids: list[str] = []
                replaced: list[str] = []
                failures: list[tuple[str, str]] = []
                for one in batch:
                    got, rep, bad = _send(client, [one], metadata, retries)
                    ids += got
                    replaced += rep
                    failures += bad
                return ids, replaced, failures
            if exc.status in (401, 403):
                raise
            return [], [], [(str(p), exc.detail) for p, _ in batch]
        except OSError as exc:
            if attempt < retries:
                time.sleep(min(2.0**attempt, 30.0))
                continue
            return [], [], [(str(p), f"could not send: {exc}") for p, _ in batch]
    return [], [], [(str(p), "gave up after retries") for p, _ in batch]


def index_folder(
    client: SimSearchClient,
    folder: Path,
    *,
    batch_size: int = 8,
    concurrency: int = 2,
    id_scheme: IdScheme = "path",
    id_prefix: str = "",
    resume: bool = True,
    metadata: dict[str, Any] | None = None,
    retries: int = 5,
    progress: Callable[[BulkReport], None] | None = None,
) -> BulkReport:
    """Index every image under `folder`; returns what happened. With `resume`, ids the server
    already stores (listed once, by id prefix) are skipped, so an interrupted run continues."""
    paths = find_images(folder)
    report = BulkReport(total=len(paths))
    pending = [(p, item_id(p, folder, id_scheme, id_prefix)) for p in paths]
    if resume and pending:
        stored = {item.id for item in client.iter_items(id_prefix=id_prefix or None)}
        report.skipped = sum(1 for _, i in pending if i in stored)
        pending = [(p, i) for p, i in pending if i not in stored]
    if progress:
        progress(report)
    batches = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(_send, client, b, metadata, retries) for b in batches]
        for future in as_completed(futures):
            ids, replaced, failures = future.result()
            report.indexed += len(ids)
            report.replaced += len(replaced)
            report.failed += failures
            if progress:
                progress(report)
    return report
