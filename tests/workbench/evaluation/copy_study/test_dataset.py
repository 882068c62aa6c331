"""workbench/evaluation/copy_study/dataset.py and edits.py: the near-copy guard, the split of
never-stored distractors, the stores' distractor items and the queries (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workbench.evaluation.copy_study import dataset
from workbench.evaluation.copy_study.dataset import (
    distinct_sources,
    distractor_items,
    make_queries,
    never_stored,
)
from workbench.evaluation.copy_study.edits import EDITS, NEGATIVE_EDITS, crops, tiles


def _unit(*rows: list[float]) -> np.ndarray:
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_a_distractor_near_a_photo_or_a_kept_distractor_is_dropped() -> None:
    photos = _unit([1, 0, 0])
    sources = _unit(
        [0.99, 0.1, 0],  # a copy of the photo (cosine ~0.995)
        [0, 1, 0],
        [0, 0.99, 0.1],  # a copy of the kept distractor 1
        [0, 0, 1],
        [0, 0.6, 0.8],  # cosine 0.6 / 0.8 to the kept ones: distinct
    )
    assert distinct_sources(photos, sources) == ([1, 3, 4], [0, 2])


def test_about_a_fifth_of_the_distractors_are_never_stored() -> None:
    names = [f"dist:pic{i}.jpg" for i in range(500)]
    share = sum(map(never_stored, names)) / len(names)
    assert 0.15 < share < 0.25
    assert [never_stored(n) for n in names] == [never_stored(n) for n in names]


def test_crops_are_halves_and_tiles_of_the_picture() -> None:
    img = Image.new("RGB", (60, 30))
    assert [c.size for c in crops(img)] == [(30, 30)] * 2 + [(60, 15)] * 2 + [(30, 15)] * 4 + [
        (20, 10)
    ] * 9
    assert len(tiles(img, 4)) == 16


def _pictures(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), (40 * i, 100, 200)) for i in range(n)]


def test_store_items_add_4x4_tiles_until_the_store_is_large_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = {0: "dist:a", 1: "dist:b", 2: "dist:c"}
    images = _pictures(3)
    # Large enough already (the wholes, 17 crops each and the photos pass MIN_STORE).
    ids, blobs = distractor_items(names, [0, 1, 2], images, photos_stored=1000, smoke=False)
    assert len(ids) == len(blobs) == 3 * 17
    assert ids[:2] == ["dist:a#1", "dist:a#2"] and ids[-1] == "dist:c#17"
    # Too small: 4x4 tiles of one picture after another until the store passes MIN_STORE.
    monkeypatch.setattr(dataset, "MIN_STORE", 3 + 51 + 10 + 16)  # one picture's tiles do it
    ids, _ = distractor_items(names, [0, 1, 2], images, photos_stored=10, smoke=False)
    assert len(ids) == 51 + 16 and ids[-1] == "dist:a#115"
    # --smoke: every picture's tiles, whatever the size.
    ids, _ = distractor_items(names, [0, 1, 2], images, photos_stored=1000, smoke=True)
    assert len(ids) == 51 + 48


def test_queries_are_every_photo_edit_and_the_never_stored_with_a_few_edits() -> None:
    photos = dict(zip(["p1", "p2"], _pictures(2), strict=True))
    negatives = [("dist:x", _pictures(1)[0])]
    queries = make_queries(photos, negatives)
    assert len(queries) == 2 * (1 + len(EDITS)) + 1 + len(NEGATIVE_EDITS)
    first = queries[0]
    assert (first.name, first.group, first.edit, first.source_id) == (
        "p1/original",
        "p1",
        "original",
        "photo:p1",
    )
    assert {q.edit for q in queries if q.group == "p2"} == {"original", *EDITS}
    never = [q for q in queries if q.source_id is None]
    assert [q.edit for q in never] == ["original", *NEGATIVE_EDITS]
    assert all(q.data[:2] == b"\xff\xd8" for q in queries)  # JPEG bytes
