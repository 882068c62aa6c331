"""The phone / camera JPEGs are made at run time from the shared photos, deterministically."""

from __future__ import annotations

import io

from PIL import Image

from workbench.bench.photo_sizes.inputs import describe, upscaled_jpeg


def _jpeg(size: tuple[int, int]) -> bytes:
    src = io.BytesIO()
    Image.new("RGB", size, (40, 90, 160)).save(src, "JPEG")
    return src.getvalue()


def test_upscaled_jpegs_are_deterministic_and_sized() -> None:
    src = _jpeg((300, 200))
    a = upscaled_jpeg(src, (640, 480), seed=3)
    assert a == upscaled_jpeg(src, (640, 480), seed=3)
    assert a != upscaled_jpeg(src, (640, 480), seed=4)
    assert Image.open(io.BytesIO(a)).size == (640, 480)


def test_grain_keeps_the_file_as_large_as_a_photo_of_that_size() -> None:
    """A flat colour compresses to almost nothing; with grain it costs ~0.16 bytes a pixel at
    quality 92, as a phone's JPEG does (~2 MB at 12 MP)."""
    out = upscaled_jpeg(_jpeg((300, 200)), (400, 300), seed=0)
    flat = io.BytesIO()
    Image.new("RGB", (400, 300), (40, 90, 160)).save(flat, "JPEG", quality=92)
    assert len(out) > 5 * len(flat.getvalue()) and len(out) > 0.1 * 400 * 300


def test_describe_counts_sizes_and_mean_bytes() -> None:
    blobs = [("a", _jpeg((30, 20))), ("b", _jpeg((30, 20))), ("c", _jpeg((8, 9)))]
    out = describe(blobs)
    assert out["count"] == 3 and out["sizes"] == ["30x20", "8x9"]
    assert out["mean_bytes"] == sum(len(b) for _, b in blobs) // 3
