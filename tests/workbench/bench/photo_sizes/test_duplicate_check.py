"""The cost of POST /index's duplicate check, measured in process on a real FAISS store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.bench.photo_sizes.duplicate_check import counting_sift_passes, duplicate_check_cost
from workbench.servers.service import settings_for


def test_duplicate_check_cost_counts_the_checks_post_index_makes(
    tmp_path: Path, web_photos: list[tuple[str, bytes]], tiny_model: Path
) -> None:
    """Re-uploaded photos: every upload's exact copy is reported (cosine 1 decides alone);
    the counts are per image and the CPU figure is measured, not assumed."""
    blobs = [b for _, b in web_photos]
    settings = settings_for(tmp_path / "data", tiny_model, {})
    repeated = duplicate_check_cost(blobs, settings, tmp_path, "repeated")
    assert repeated["uploads"] == "repeated" and repeated["images"] == 3
    assert repeated["copies_reported_per_image"] >= 1.0
    assert repeated["cpu_ms_per_image"] > 0 and repeated["sift_passes_per_image"] >= 0
    distinct = duplicate_check_cost(blobs, settings, tmp_path, "distinct")
    assert distinct["images"] == 3 and distinct["copies_reported_per_image"] <= 2 / 3
    assert not (tmp_path / "dupcheck-repeated").exists()  # its store is removed after


def test_sift_passes_are_counted_inside_and_the_real_extract_is_back_after() -> None:
    import app.search.verify as verify

    real = verify.extract
    grey = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    with counting_sift_passes() as passes:
        assert verify.extract is not real
        verify.extract(grey)
        verify.extract(grey)
    assert passes == [2] and verify.extract is real
