"""SuperGlobal in the search service: skipped (and said so) in a store smaller than
max(top_m, rerank.min_store_items); run otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import FaissStoreSettings, RerankSettings, Settings
from app.index.faiss_store import FaissStore
from app.search.service import SearchService

DIM = 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FaissStore]:
    s = FaissStore.open(tmp_path / "store", DIM, FaissStoreSettings())
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12, DIM)).astype(np.float32)
    s.add([f"v{i}" for i in range(12)], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    yield s
    s.close()


def _service(store: FaissStore, tmp_path: Path, **rerank: Any) -> SearchService:
    settings = Settings(data_dir=tmp_path, rerank=RerankSettings(**rerank))
    # The embedder is not used by vector searches.
    return SearchService(embedder=None, store=store, settings=settings)  # type: ignore[arg-type]


def _query(store: FaissStore) -> np.ndarray:
    item = store.get("v3", with_vector=True)
    assert item is not None and item.vector is not None
    return np.asarray(item.vector, dtype=np.float32)


def test_superglobal_is_skipped_in_a_small_store(store: FaissStore, tmp_path: Path) -> None:
    service = _service(store, tmp_path)  # defaults: top_m 100, min_store_items 100
    plain = service.search_vector_sync(_query(store), top_k=5)
    out = service.search_vector_sync(_query(store), top_k=5, rerank="superglobal")
    assert out.rerank == "none"
    assert out.rerank_skipped is not None and "holds 12 items, fewer than 100" in out.rerank_skipped
    assert [h.id for h in out.hits] == [h.id for h in plain.hits]
    assert [h.score for h in out.hits] == [h.score for h in plain.hits]
    assert "rerank" not in out.timings_ms
    # A request's own top_m larger than the store also skips it.
    service = _service(store, tmp_path, min_store_items=0)
    out = service.search_vector_sync(_query(store), top_k=5, rerank="superglobal", top_m=20)
    assert out.rerank == "none" and "fewer than 20" in (out.rerank_skipped or "")


def test_superglobal_runs_when_the_store_is_large_enough(store: FaissStore,
                                                         tmp_path: Path) -> None:
    service = _service(store, tmp_path, min_store_items=10)
    out = service.search_vector_sync(_query(store), top_k=5, rerank="superglobal", top_m=8)
    assert out.rerank == "superglobal" and out.rerank_skipped is None
    assert "rerank" in out.timings_ms and out.hits[0].id == "v3"
    plain = service.search_vector_sync(_query(store), top_k=5)
    assert plain.rerank == "none" and plain.rerank_skipped is None
