"""Thumbnails: size, aspect ratio, EXIF orientation, transparency, odd modes, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.config import ThumbnailSettings
from app.thumbnails import make_thumbnail
from tests.app.api.conftest import PHOTOS

MAX_PIXELS = 40_000_000


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _open(data: bytes | None) -> Image.Image:
    assert data is not None
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.mode == "RGB"
    return img


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")
def test_real_photo_long_side_and_aspect() -> None:
    photo = sorted(PHOTOS.glob("*.jpg"))[0]
    with Image.open(photo) as original:
        w, h = original.size
    thumb = _open(make_thumbnail(photo.read_bytes(), ThumbnailSettings(), MAX_PIXELS))
    assert max(thumb.size) == ThumbnailSettings().long_side == 384
    assert thumb.size[0] / thumb.size[1] == pytest.approx(w / h, rel=0.02)


def test_setting_sets_the_long_side_and_small_images_are_not_enlarged() -> None:
    img = Image.new("RGB", (900, 300), (10, 200, 30))
    thumb = _open(make_thumbnail(_encode(img, "PNG"), ThumbnailSettings(long_side=90), MAX_PIXELS))
    assert thumb.size == (90, 30)
    small = Image.new("RGB", (40, 20), (10, 200, 30))
    thumb = _open(make_thumbnail(_encode(small, "PNG"), ThumbnailSettings(), MAX_PIXELS))
    assert thumb.size == (40, 20)


def test_exif_orientation_is_applied() -> None:
    # 400x200 with a red left half; orientation 6 = rotate 90 degrees clockwise to display.
    arr = np.zeros((200, 400, 3), dtype=np.uint8)
    arr[:, :200] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    thumb = _open(make_thumbnail(data, ThumbnailSettings(long_side=100), MAX_PIXELS))
    assert thumb.size == (50, 100)
    pixels = np.asarray(thumb).astype(int)
    # After a clockwise turn, the red half is on top.
    assert pixels[10, 25, 0] > 200 and pixels[90, 25, 0] < 60


def test_transparency_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    thumb = _open(make_thumbnail(_encode(img, "PNG"), ThumbnailSettings(), MAX_PIXELS))
    assert np.asarray(thumb).min() > 245


def test_sixteen_bit_greyscale_keeps_its_range() -> None:
    arr = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (16, 1))
    img = Image.fromarray(arr)  # mode I;16
    thumb = np.asarray(_open(make_thumbnail(_encode(img, "PNG"), ThumbnailSettings(), MAX_PIXELS)))
    assert thumb[..., 0].min() < 10 and thumb[..., 0].max() > 245


def test_undecodable_or_too_large_gives_none() -> None:
    assert make_thumbnail(b"not an image", ThumbnailSettings(), MAX_PIXELS) is None
    img = Image.new("RGB", (100, 100))
    assert make_thumbnail(_encode(img, "PNG"), ThumbnailSettings(), max_pixels=9999) is None


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")
def test_working_thumbnail_decodes_to_the_pixels_an_optimised_encode_gives() -> None:
    # The copy verdict extracts keypoints from the decoded thumbnail: skipping the Huffman
    # optimisation pass must change the file, never the picture.
    from app.thumbnails import thumbnail_jpeg, working_thumbnail

    with Image.open(PHOTOS / "plasma_kite.jpg") as img:
        img.thumbnail((512, 512))
        pixels = np.asarray(img.convert("RGB"))
    settings = ThumbnailSettings()
    data = thumbnail_jpeg(pixels, settings)
    assert working_thumbnail(pixels, settings, (1, 1)) == data
    small = Image.fromarray(pixels)
    small.thumbnail((settings.long_side,) * 2, Image.Resampling.LANCZOS, reducing_gap=1.0)
    optimised = io.BytesIO()
    small.save(optimised, format="JPEG", quality=settings.quality, optimize=True)
    assert optimised.getvalue() != data
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(optimised.getvalue())) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A failing encode gives None (the item is indexed without a thumbnail), not an error.
    assert working_thumbnail(np.zeros((0, 4, 3), np.uint8), settings, (0, 4)) is None
