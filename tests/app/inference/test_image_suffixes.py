"""One list of image file suffixes: the accepted formats' own, and copies that equal it where
the floors forbid the import (models never imports app; the client imports nothing of ours)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.inference.preprocess import ACCEPTED_FORMATS, IMAGE_SUFFIXES, decode_image
from simsearch_client.bulk import IMAGE_SUFFIXES as CLIENT_SUFFIXES


def test_suffixes_are_exactly_those_of_the_accepted_formats() -> None:
    registered = Image.registered_extensions()  # ".jpg" -> "JPEG", ...
    by_format = {fmt: {s for s, f in registered.items() if f == fmt} for fmt in ACCEPTED_FORMATS}
    # Every suffix names an accepted format, and every accepted format has its usual suffix.
    assert all(registered[s] in ACCEPTED_FORMATS for s in IMAGE_SUFFIXES)
    assert all(by_format[fmt] & IMAGE_SUFFIXES for fmt in ACCEPTED_FORMATS)


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_suffix_decodes(suffix: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 90)).save(buf, format=Image.registered_extensions()[suffix])
    assert decode_image(buf.getvalue(), max_pixels=10_000).shape == (6, 8, 3)


def test_copies_equal_the_home() -> None:
    assert CLIENT_SUFFIXES == IMAGE_SUFFIXES


@pytest.mark.torch
def test_training_copy_equals_the_home() -> None:
    from models.training.data import IMAGE_SUFFIXES as TRAINING_SUFFIXES

    assert TRAINING_SUFFIXES == IMAGE_SUFFIXES
