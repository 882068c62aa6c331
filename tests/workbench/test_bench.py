"""workbench/bench/photos.py: its inputs and the duplicate check's cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.onnx_models import write_tiny_model
from workbench.bench.suite import parse_args

REPO = Path(__file__).resolve().parents[2]


def test_photos_section_inputs_are_deterministic_and_sized() -> None:
    """bench_photos makes its phone / camera JPEGs at run time from the shared photos: same
    bytes for the same seed, the asked size, and the section runs through bench.py."""
    import io

    from PIL import Image

    from workbench.bench.photos import upscaled_jpeg

    src = io.BytesIO()
    Image.new("RGB", (300, 200), (40, 90, 160)).save(src, "JPEG")
    a = upscaled_jpeg(src.getvalue(), (640, 480), seed=3)
    assert a == upscaled_jpeg(src.getvalue(), (640, 480), seed=3)
    assert a != upscaled_jpeg(src.getvalue(), (640, 480), seed=4)
    assert Image.open(io.BytesIO(a)).size == (640, 480)
    assert "photos" in parse_args(["--sections", "photos"]).sections


def test_duplicate_check_cost_counts_the_checks_post_index_makes(tmp_path: Path) -> None:
    """Re-uploaded photos: every upload's exact copy is reported (cosine 1 decides alone);
    the counts are per image and the CPU figure is measured, not assumed."""
    from workbench.bench.photos import duplicate_check_cost
    from workbench.servers.service import settings_for

    photos = REPO.parent / "shared" / "data" / "photos"
    if not photos.is_dir():
        pytest.skip("../shared/data/photos is not available")
    names = ["plasma_kite.jpg", "mate_garden.jpg", "skimage_coffee.jpg"]
    blobs = [(photos / n).read_bytes() for n in names]
    settings = settings_for(tmp_path / "data", write_tiny_model(tmp_path / "model"), {})
    repeated = duplicate_check_cost(blobs, settings, tmp_path, "repeated")
    assert repeated["uploads"] == "repeated" and repeated["images"] == 3
    assert repeated["copies_reported_per_image"] >= 1.0
    assert repeated["cpu_ms_per_image"] > 0 and repeated["sift_passes_per_image"] >= 0
    distinct = duplicate_check_cost(blobs, settings, tmp_path, "distinct")
    assert distinct["images"] == 3 and distinct["copies_reported_per_image"] <= 2 / 3
    assert not (tmp_path / "dupcheck-repeated").exists()  # its store is removed after
