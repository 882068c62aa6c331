"""DuplicateFinder over a real FAISS store and the search service: a scan longer than the
wait, and a background rescan with writes carried over (the endpoint itself is tested in
tests/app/api/test_duplicates.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import numpy as np

from app.config import DuplicateSettings, FaissStoreSettings, Settings
from app.errors import DuplicateScanPending
from app.index.faiss_store import FaissStore
from app.search.service import SearchService


def test_a_long_scan_answers_pending_with_progress_then_the_groups(tmp_path: Path) -> None:
    """A scan longer than duplicates.wait_s: DuplicateScanPending (-> 503 + Retry-After) says
    how far it got; the scan goes on, and a later call gets its result."""
    store = FaissStore.open(tmp_path / "store", 16, FaissStoreSettings())
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 16)).astype(np.float32)
    store.add([f"v{i}" for i in range(400)], vectors / np.linalg.norm(vectors, axis=1)[:, None])
    settings = Settings(
        data_dir=tmp_path, duplicates=DuplicateSettings(wait_s=0.001, concurrency=1)
    )
    # The embedder is not used by by-id searches.
    service = SearchService(embedder=None, store=store, settings=settings)  # type: ignore[arg-type]

    async def run() -> tuple[list[str], int]:
        messages = []
        while True:  # as a client does after each 503
            try:
                page = await service.duplicates.page(10, None)
            except DuplicateScanPending as pending:
                messages.append(str(pending))
                await asyncio.sleep(0.005)
                continue
            return messages, page.items_checked

    try:
        messages, checked = asyncio.run(run())
    finally:
        store.close()
    assert checked == 400
    assert messages and all("retry" in m for m in messages)
    # Mid-scan answers say how far it got.
    assert any(re.search(r"\b[1-9]\d* of 400 stored items checked", m) for m in messages)


def test_writes_during_a_background_rescan_are_carried_into_its_result(tmp_path: Path) -> None:
    """The store changes behind the service's back (count differs): a rescan runs in the
    background while the kept graph answers; adds and deletes made through the service
    meanwhile are applied to the kept graph and carried into the rescan's graph."""
    # 64-d: random vectors are near orthogonal (cosine sd ~0.13), never copies of each other.
    store = FaissStore.open(tmp_path / "store", 64, FaissStoreSettings())
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((1500, 64)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    twins = rng.standard_normal((3, 64)).astype(np.float32)
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)
    store.add([f"n{i}" for i in range(1500)], noise)
    # Identical descriptors under two ids: a copy under any verdict.
    store.add(["a", "a2"], np.stack([twins[0], twins[0]]))
    settings = Settings(data_dir=tmp_path, duplicates=DuplicateSettings(wait_s=120, concurrency=1))
    service = SearchService(embedder=None, store=store, settings=settings)  # type: ignore[arg-type]
    finder = service.duplicates

    def pairs(page: Any) -> list[set[str]]:
        return [set(g.ids) for g in page.groups]

    async def run() -> tuple[list[set[str]], bool, list[set[str]]]:
        first = await finder.page(10, None)
        assert {"a", "a2"} in pairs(first)
        store.add(["b", "b2"], np.stack([twins[1], twins[1]]))  # not through the service
        await finder.page(10, None)  # notices the count, starts the rescan
        rescanning = finder._rescan is not None
        await service.delete_item("a2")
        await service.index_vectors(["c", "c2"], np.stack([twins[2], twins[2]]), [None, None])
        during = pairs(await finder.page(10, None))  # applied to the kept graph
        while finder._rescan is not None:
            await asyncio.sleep(0.02)
            await finder.page(10, None)
        return during, rescanning, pairs(await finder.page(10, None))

    try:
        during, rescanning, after = asyncio.run(run())
    finally:
        store.close()
    assert rescanning
    assert {"c", "c2"} in during and {"a", "a2"} not in during
    assert sorted(map(sorted, after)) == [["b", "b2"], ["c", "c2"]]
