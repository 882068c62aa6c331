"""Shared inputs of the photo-size tests: a few real photos and the tiny graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.artifacts.tiny_model import write_tiny_model

REPO = Path(__file__).resolve().parents[4]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
NAMES = ["plasma_kite.jpg", "mate_garden.jpg", "skimage_coffee.jpg"]


@pytest.fixture
def web_photos() -> list[tuple[str, bytes]]:
    if not PHOTOS.is_dir():
        pytest.skip("../shared/data/photos is not available")
    return [(n, (PHOTOS / n).read_bytes()) for n in NAMES]


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "model", max_side=128)
