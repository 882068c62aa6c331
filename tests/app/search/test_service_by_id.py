"""A by-id search ("more like this", the duplicate check of POST /index) over a real FAISS store
with thumbnails: the query is the item's own thumbnail, so the copy verdict extracts its SIFT
features once and serves them to both sides from its cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import app.search.verdict as verdict_module
import app.search.verify as verify_module
from app.config import FaissStoreSettings, Settings, ThumbnailSettings
from app.index.faiss_store import FaissStore
from app.search.service import SearchService
from app.search.verify import features_from_jpeg
from app.thumbnails import make_thumbnail

PHOTOS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "photos"
pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")

NAMES = ["plasma_kite.jpg", "mate_garden.jpg"]
DIM = 8


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FaissStore]:
    s = FaissStore.open(tmp_path / "store", DIM, FaissStoreSettings())
    # Cosine 0.7 between the two: inside the default rule's geometry band (0.55..0.92).
    vecs = np.zeros((2, DIM), np.float32)
    vecs[0, 0] = 1.0
    vecs[1, 0], vecs[1, 1] = 0.7, np.sqrt(1 - 0.49)
    thumbs = []
    for name in NAMES:
        thumb = make_thumbnail((PHOTOS / name).read_bytes(), ThumbnailSettings(), 1 << 30)
        assert thumb is not None
        thumbs.append(thumb)
    s.add(NAMES, vecs, [None, None], thumbs)
    yield s
    s.close()


def test_by_id_searches_extract_each_items_features_once(
    store: FaissStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = verify_module.extract

    def counting(grey: np.ndarray) -> Any:
        calls.append(grey.shape[:2])
        return real(grey)

    monkeypatch.setattr(verify_module, "extract", counting)
    monkeypatch.setattr(verdict_module, "extract", counting)
    # The embedder is not used by by-id searches.
    settings = Settings(data_dir=tmp_path)
    service = SearchService(embedder=None, store=store, settings=settings)  # type: ignore[arg-type]
    band = service.verdict.rule
    assert band.needs_geometry(0.7)

    first = asyncio.run(service.search_by_id("plasma_kite.jpg", top_k=5))
    assert [h.id for h in first.hits] == ["mate_garden.jpg"]
    assert first.hits[0].match is False  # unrelated photos: geometry says no
    # The query's straight pass, the hit's stored features, the query's mirrored pass.
    assert len(calls) == 3
    own = store.search(np.eye(DIM, dtype=np.float32)[[0]], 1)[0][0]
    found, cached = service.verdict.cache.get((own.id, own.row))
    thumb = store.thumbnail("plasma_kite.jpg")
    assert found and cached is not None and thumb is not None
    reference = features_from_jpeg(thumb, band.working_side)
    assert reference is not None
    np.testing.assert_array_equal(cached.descriptors, reference.descriptors)
    calls.clear()  # the reference extraction above is the test's own

    second = asyncio.run(service.search_by_id("mate_garden.jpg", top_k=5))
    assert [h.id for h in second.hits] == ["plasma_kite.jpg"]
    assert second.hits[0].match is False
    # Both straight feature sets come from the cache now: only the mirrored pass is new
    # (without the sharing the query's straight pass would run again).
    assert len(calls) == 1
