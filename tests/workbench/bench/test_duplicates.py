"""workbench/bench/duplicates*.py: the data (near-copies at the stated cosine, thumbnails),
the match graph's memory figure, and one small size measured through the app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.search.verdict import default_rule
from workbench.artifacts.tiny_model import TINY_DIM, write_tiny_model
from workbench.bench.duplicates_data import near_copies, photo_thumbnails, vectors_with_copies
from workbench.bench.duplicates_graph import graph_memory
from workbench.bench.duplicates_scan import measure

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "index_data" / "samples"


def test_near_copies_are_close_to_distinct_sources() -> None:
    ids, vectors, base = vectors_with_copies(400, 20, 64, seed=0)
    assert len(ids) == 400 and vectors.shape == (400, 64) and base.shape == (380, 64)
    assert ids[379] == "v379" and ids[380] == "c0" and ids[-1] == "c19"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)  # fp16 rows
    cos = vectors[380:] @ base.T  # [20, 380]
    best = cos.max(axis=1)
    # noise of norm ~0.25: cosine ~ 1 / sqrt(1 + 0.25^2) = 0.97 to the source
    assert np.all(best > 0.94) and np.all(best < 0.995)
    assert len(set(cos.argmax(axis=1).tolist())) == 20  # distinct sources
    again = near_copies(base, 20, seed=0)
    np.testing.assert_array_equal(again, vectors[380:])
    assert not np.array_equal(near_copies(base, 20, seed=1), again)


def test_thumbnails_of_the_photos_and_an_empty_folder_refused(tmp_path: Path) -> None:
    thumbs = photo_thumbnails(SAMPLES)
    assert len(thumbs) == len(list(SAMPLES.glob("*.jpg"))) and thumbs[0][:2] == b"\xff\xd8"
    with pytest.raises(SystemExit, match=r"no \.jpg photos"):
        photo_thumbnails(tmp_path)


def test_graph_memory_groups_the_pairs() -> None:
    out = graph_memory(1000, copy_fraction=0.1)
    # 50 items i < 50 each matched to item n - 1 - i: 50 pairs.
    assert out["graph_items"] == 1000 and out["graph_groups"] == 50
    assert out["graph_heap_mib"] > 0


def test_one_size_through_the_app_groups_the_planted_copies(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model", max_side=128)
    out = measure(120, 6, model, seed=0)
    assert out["n"] == 120 and out["dim"] == TINY_DIM and out["index_type"] == "flat"
    assert out["thumbnails"] is False
    # Without thumbnails only the cosine can say copy: a planted pair is a group when its
    # cosine reaches the rule's cosine_alone (the same vectors the bench made).
    _, vectors, base = vectors_with_copies(120, 6, TINY_DIM, seed=0)
    planted = (vectors[114:] @ base.T).max(axis=1)
    expected = int((planted >= default_rule().cosine_alone).sum())
    assert expected > 0
    assert (out["groups"], out["items_in_groups"]) == (expected, 2 * expected)
    assert out["first_scan_s"] > 0 and out["raw_store_search_ms_per_query"] > 0
    assert out["scan_vs_raw_single"] > 0 and out["scan_vs_raw_batched"] > 0
