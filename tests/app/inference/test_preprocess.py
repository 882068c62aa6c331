from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from app.artifacts import Preprocessing
from app.errors import InvalidImage, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from app.inference.preprocess import (
    cap_long_side,
    cap_scale,
    crop_bbox,
    decode_image,
    pool_scales,
    preprocess_multiscale,
    resize_bicubic,
    resize_bilinear,
    scale_sizes,
)

MAX_PIXELS = 40_000_000


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG written by hand: lets tests declare any size and any bit depth."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


# ------------------------------------------------------------------------------- decode_image


def test_decode_rgb_jpeg_is_writable_contiguous_uint8() -> None:
    data = encode(Image.fromarray(random_rgb(30, 40)), "JPEG")
    img = decode_image(data, MAX_PIXELS)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    assert img.flags.c_contiguous and img.flags.writeable


def test_decode_png_is_lossless() -> None:
    rgb = random_rgb(17, 23)
    decoded = decode_image(encode(Image.fromarray(rgb), "PNG"), MAX_PIXELS)
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "GIF"])
def test_decode_grayscale_becomes_three_equal_channels(fmt: str) -> None:
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))  # 8x32
    img = decode_image(encode(Image.fromarray(gray, "L"), fmt), MAX_PIXELS)
    assert img.shape == (8, 32, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert np.abs(img[..., 0].astype(int) - gray).max() <= 3  # JPEG is lossy


def test_decode_bilevel_bmp() -> None:
    bw = Image.new("1", (4, 2), 0)
    bw.putpixel((1, 1), 1)
    img = decode_image(encode(bw, "BMP"), MAX_PIXELS)
    assert img[1, 1].tolist() == [255, 255, 255] and img[0, 0].tolist() == [0, 0, 0]


def test_decode_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode_image(data, MAX_PIXELS)
    r, g, b = img[8, 8].astype(int)
    assert r > 230 and g < 30 and b < 30


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_decode_palette_with_transparency_composites_on_white(fmt: str) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([200, 10, 10, 0, 200, 0] + [0] * (254 * 3))
    pal.putpixel((2, 1), 1)
    img = decode_image(encode(pal, fmt, transparency=1), MAX_PIXELS)
    assert img[1, 2].tolist() == [255, 255, 255]  # transparent index -> white
    assert img[0, 0].tolist() == [200, 10, 10]


def test_decode_rgba_composites_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 128  # black at half opacity
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[0, 1] = (10, 20, 30, 0)
    img = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), MAX_PIXELS)
    assert np.abs(img[2, 2].astype(int) - 127).max() <= 1
    assert img[0, 0].tolist() == [10, 20, 30]
    assert img[0, 1].tolist() == [255, 255, 255]


def test_decode_la_composites_on_white() -> None:
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[0, 0] = (100, 255)
    img = decode_image(encode(Image.fromarray(la, "LA"), "PNG"), MAX_PIXELS)
    assert img[0, 0].tolist() == [100] * 3 and img[1, 1].tolist() == [255] * 3


def test_decode_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535, 32768]], dtype=np.uint16)
    im16 = Image.fromarray(values)
    data = encode(im16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = decode_image(data, MAX_PIXELS)
    assert img[0, :, 0].tolist() == [0, 100, 255, 128]


def test_decode_16bit_rgb_png() -> None:
    # One row, filter byte 0, then R,G,B as big-endian 16-bit samples.
    row = b"\x00" + struct.pack(">6H", 0xFF00, 0x8000, 0x0100, 0x0000, 0xFFFF, 0x7FFF)
    data = png_bytes(2, 1, 16, 2, zlib.compress(row))
    img = decode_image(data, MAX_PIXELS)
    expected = np.array([[0xFF00, 0x8000, 0x0100], [0, 0xFFFF, 0x7FFF]]) / 257.0
    assert img.shape == (1, 2, 3)
    assert np.abs(img[0].astype(float) - expected).max() <= 1.0


def test_decode_float_tiff_in_unit_range() -> None:
    values = np.array([[0.0, 0.5, 1.0, 0.25]], dtype=np.float32)
    img = decode_image(encode(Image.fromarray(values, "F"), "TIFF"), MAX_PIXELS)
    assert img[0, :, 0].tolist() == [0, 128, 255, 64]


def test_decode_int32_tiff_with_negative_values_is_stretched() -> None:
    values = np.array([[-1000, 0, 1000]], dtype=np.int32)
    img = decode_image(encode(Image.fromarray(values, "I"), "TIFF"), MAX_PIXELS)
    assert img[0, :, 0].tolist() == [0, 128, 255]


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
def test_decode_takes_first_frame_of_animations(fmt: str) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    first, *rest = _frames()
    kwargs: dict[str, object] = {"save_all": True, "append_images": rest}
    if fmt == "WEBP":
        kwargs["lossless"] = True
    data = encode(first, fmt, **kwargs)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    img = decode_image(data, MAX_PIXELS)
    assert img.shape == (6, 8, 3)
    assert np.abs(img.astype(int) - [255, 0, 0]).max() <= 2


def test_decode_applies_exif_orientation() -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[..., 2] = 255  # blue
    stored[:8, :8] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    img = decode_image(data, MAX_PIXELS)
    assert img.shape == (40, 20, 3)  # width and height swapped
    # Rotating clockwise moves the stored top-left corner to the displayed top-right.
    assert img[2, -3, 0] > 200 and img[2, -3, 2] < 60
    assert img[-3, 2, 2] > 200


def test_decode_draft_mode_decodes_big_jpegs_smaller() -> None:
    data = encode(Image.fromarray(random_rgb(1200, 1600)), "JPEG")
    assert decode_image(data, MAX_PIXELS).shape == (1200, 1600, 3)
    small = decode_image(data, MAX_PIXELS, draft_max_side=300)
    assert 300 <= max(small.shape[:2]) < 600  # 1/4 scale: 400x300
    assert small.shape == (300, 400, 3)
    # Not a JPEG: the option is ignored.
    png = encode(Image.fromarray(random_rgb(60, 80)), "PNG")
    assert decode_image(png, MAX_PIXELS, draft_max_side=10).shape == (60, 80, 3)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is plain text and no image\n", bytes(range(256)) * 8],
    ids=["empty", "text", "random"],
)
def test_decode_rejects_non_images(data: bytes) -> None:
    with pytest.raises(InvalidImage, match="JPEG, PNG"):
        decode_image(data, MAX_PIXELS)


def test_decode_rejects_truncated_jpeg(photo_bytes: bytes) -> None:
    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(photo_bytes[: len(photo_bytes) // 2], MAX_PIXELS)


def test_decode_rejects_truncated_png() -> None:
    data = encode(Image.fromarray(random_rgb(64, 64)), "PNG")
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2], MAX_PIXELS)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "SVG"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"P6\n4 4\n255\n" + bytes(48), "PNM"),
    ],
)
def test_decode_rejects_foreign_formats_as_unsupported(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=name):
        decode_image(data, MAX_PIXELS)


def test_decode_rejects_ico_even_though_pillow_reads_it() -> None:
    data = encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(UnsupportedMediaType, match="ICO"):
        decode_image(data, MAX_PIXELS)


def test_decode_refuses_decompression_bomb_without_allocating() -> None:
    # Declares 100000 x 100000 RGB (30 GB decoded) in a few dozen bytes.
    data = png_bytes(100_000, 100_000, 8, 2, zlib.compress(b"\x00" * 16))
    assert len(data) < 100
    t0 = time.perf_counter()
    with pytest.raises(PayloadTooLarge):
        decode_image(data, MAX_PIXELS)
    assert time.perf_counter() - t0 < 1.0


def test_decode_checks_max_pixels_before_decoding() -> None:
    # 8000 x 8000 = 64 Mpx: under Pillow's own bomb limit, over ours. If the size were not
    # checked first, the (missing) pixel data would give InvalidImage instead.
    data = png_bytes(8000, 8000, 8, 2, zlib.compress(b"\x00" * 16))
    with pytest.raises(PayloadTooLarge, match="8000x8000"):
        decode_image(data, MAX_PIXELS)
    small = encode(Image.fromarray(random_rgb(100, 100)), "PNG")
    with pytest.raises(PayloadTooLarge):
        decode_image(small, max_pixels=9999)
    assert decode_image(small, max_pixels=10_000).shape == (100, 100, 3)


def test_decode_accepts_one_pixel_image() -> None:
    img = decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), MAX_PIXELS)
    assert img.tolist() == [[[1, 2, 3]]]


# ------------------------------------------------------------------------ cap and crop


def test_cap_long_side_never_upscales_and_returns_same_object() -> None:
    img = random_rgb(100, 80)
    assert cap_long_side(img, 100) is img
    assert cap_long_side(img, 4096) is img


def test_cap_long_side_downscales_keeping_aspect() -> None:
    img = random_rgb(1500, 2000)
    out = cap_long_side(img, 1024)
    assert out.shape == (768, 1024, 3) and out.dtype == np.uint8
    assert cap_scale(2000, 1500, 1024) == pytest.approx(0.512)
    tall = cap_long_side(random_rgb(3001, 1000), 1000)
    assert tall.shape == (1000, 333, 3)
    # Antialiased: a fine checkerboard averages to grey instead of aliasing.
    checker = np.indices((1024, 1024)).sum(axis=0) % 2 * 255
    board = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    assert np.abs(cap_long_side(board, 128).astype(int) - 127).max() <= 2


def test_crop_bbox_scales_and_truncates() -> None:
    img = random_rgb(768, 1024)  # capped from 1536x2048, scale 0.5
    out = crop_bbox(img, (101.9, 51.0, 301.9, 251.5), 0.5)
    # int(50.95)=50, int(25.5)=25, int(150.95)=150, int(125.75)=125
    np.testing.assert_array_equal(out, img[25:125, 50:150])
    full = crop_bbox(img, (0, 0, 2048, 1536), 0.5)
    assert full.shape == img.shape


@pytest.mark.parametrize(
    "bbox",
    [
        (10, 10, 10, 20),  # empty width
        (10, 20, 30, 5),  # y2 < y1
        (-1, 0, 10, 10),  # outside (negative)
        (0, 0, 2100, 100),  # outside (right)
        (0, 0, 100, 1600),  # outside (bottom)
        (float("nan"), 0, 10, 10),
        (0, 0, float("inf"), 10),
        (0.2, 0.2, 0.9, 0.9),  # less than one pixel after scaling
        (1, 2, 3),
    ],
)
def test_crop_bbox_rejects_invalid_boxes(bbox: tuple[float, ...]) -> None:
    with pytest.raises(InvalidRequest, match="bbox"):
        crop_bbox(random_rgb(768, 1024), bbox, 0.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ resize_bilinear

SIZES = [
    ((37, 53), (74, 106)),  # 2x up
    ((37, 53), (18, 26)),  # ~2x down
    ((40, 60), (20, 30)),  # exact 2x down (cv2 switches to INTER_AREA, same values)
    ((768, 1024), (271, 362)),  # official 0.3535
    ((768, 1024), (1086, 1448)),  # official 1.4142
    ((33, 47), (100, 13)),  # odd, up one axis and down the other
    ((5, 7), (1, 1)),
    ((1, 1), (4, 6)),
    ((1, 9), (3, 2)),
    ((64, 64), (64, 64)),  # identity
]


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_resize_bilinear_matches_cv2_inter_linear(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    cv2 = pytest.importorskip("cv2")
    img = (np.random.default_rng(1).random((*src, 3)) * 255).astype(np.float32)
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    out = resize_bilinear(img, dst[1], dst[0])
    assert out.shape == (*dst, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.abs(out - ref.reshape(out.shape)).max() < 1e-4


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_resize_bicubic_matches_cv2_inter_cubic(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    cv2 = pytest.importorskip("cv2")
    img = (np.random.default_rng(2).random((*src, 3)) * 255).astype(np.float32)
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_CUBIC)
    out = resize_bicubic(img, dst[1], dst[0])
    assert out.shape == (*dst, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.abs(out - ref.reshape(out.shape)).max() < 1e-3


def test_meta_interpolation_selects_the_resize() -> None:
    img = random_rgb(41, 57)
    base = Preprocessing(colour_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         scales=(0.7071,), max_side=1024)
    cubic = preprocess_multiscale(img, base.model_copy(update={"interpolation": "bicubic"}))[0]
    linear = preprocess_multiscale(img, base)[0]
    h, w = round(41 * 0.7071), round(57 * 0.7071)
    planes = (img.astype(np.float32) / 255.0 - 0.5) / 0.5  # RGB order kept
    expected = resize_bicubic(planes, w, h).transpose(2, 0, 1)
    assert cubic.shape == linear.shape == (3, h, w)
    assert np.abs(cubic - expected).max() < 1e-4
    assert np.abs(cubic - linear).max() > 1e-2  # the two really differ


def test_resize_bilinear_uint8_and_2d_inputs() -> None:
    cv2 = pytest.importorskip("cv2")
    img = random_rgb(31, 45)
    ref = cv2.resize(img.astype(np.float32), (70, 20), interpolation=cv2.INTER_LINEAR)
    assert np.abs(resize_bilinear(img, 70, 20) - ref).max() < 1e-4
    gray = img[..., 0].astype(np.float32)
    ref2 = cv2.resize(gray, (9, 50), interpolation=cv2.INTER_LINEAR)
    assert np.abs(resize_bilinear(gray, 9, 50) - ref2).max() < 1e-4


def test_resize_bilinear_identity_returns_a_copy() -> None:
    img = np.ones((4, 5, 3), dtype=np.float32)
    out = resize_bilinear(img, 5, 4)
    assert out is not img and np.array_equal(out, img)


def test_resize_bilinear_does_not_antialias() -> None:
    # cv2.INTER_LINEAR samples 2 taps even for a 4x downscale: a 1-px stripe pattern with
    # period 4 survives (an antialiased resize would average it away).
    row = np.tile(np.array([0, 0, 255, 255], dtype=np.float32), 16)
    img = np.repeat(row[None, :, None], 4, axis=0)
    out = resize_bilinear(img, 16, 4)
    assert np.allclose(out, 127.5)  # src = 4*d + 1.5: halfway between 0 and 255
    out = resize_bilinear(img[:, 1:], 21, 4)
    assert out.max() - out.min() > 200


# ------------------------------------------------------------------ preprocess_multiscale


def _cv2_reference(img_rgb: np.ndarray, prep: Preprocessing) -> list[np.ndarray]:
    """The official chain: cv2 BGR float32, INTER_LINEAR, /255, (x - mean) / std, CHW."""
    cv2 = pytest.importorskip("cv2")
    src = img_rgb[:, :, ::-1] if prep.colour_order == "BGR" else img_rgb
    src = src.astype(np.float32)
    h, w = img_rgb.shape[:2]
    mean = np.asarray(prep.mean, dtype=np.float32)
    std = np.asarray(prep.std, dtype=np.float32)
    out = []
    for s in prep.scales:
        size = (round(w * s), round(h * s))
        resized = cv2.resize(src, size, interpolation=cv2.INTER_LINEAR)
        out.append(((resized / prep.pixel_divisor - mean) / std).transpose(2, 0, 1))
    return out


def test_preprocess_multiscale_matches_official_cv2_chain(photo_bytes: bytes) -> None:
    img = decode_image(photo_bytes, MAX_PIXELS)
    prep = Preprocessing()
    tensors = preprocess_multiscale(img, prep)
    reference = _cv2_reference(img, prep)
    assert len(tensors) == len(prep.scales) == 5
    for tensor, ref in zip(tensors, reference, strict=True):
        assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
        assert tensor.shape == ref.shape
        assert np.abs(tensor - ref).max() < 1e-4


def test_preprocess_multiscale_rgb_order_and_custom_constants() -> None:
    img = random_rgb(45, 61, seed=3)
    prep = Preprocessing(colour_order="RGB", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4),
                         scales=(0.5, 1.0, 1.3), pixel_divisor=255.0)
    tensors = preprocess_multiscale(img, prep)
    for tensor, ref in zip(tensors, _cv2_reference(img, prep), strict=True):
        assert tensor.shape == ref.shape
        assert np.abs(tensor - ref).max() < 1e-4
    # BGR really reverses the channels.
    bgr = preprocess_multiscale(img, Preprocessing(colour_order="BGR", mean=(0, 0, 0),
                                                   std=(1, 1, 1), scales=(1.0,)))[0]
    np.testing.assert_allclose(bgr[0], img[..., 2] / 255.0, atol=1e-6)


def test_preprocess_multiscale_uses_python_round() -> None:
    # 101 * 0.5 = 50.5 -> round() gives 50 (banker's rounding), as the official code.
    assert scale_sizes(101, 99, Preprocessing(scales=(0.5,))) == [(0.5, 50, 50)]


def test_preprocess_multiscale_skips_scales_below_min_side() -> None:
    img = random_rgb(40, 60)
    prep = Preprocessing(min_side=16)
    tensors = preprocess_multiscale(img, prep)
    # 0.3535 -> 14x21: skipped; the other four are kept.
    assert [t.shape for t in tensors] == [(3, 20, 30), (3, 28, 42), (3, 40, 60), (3, 57, 85)]


def test_preprocess_multiscale_tiny_image_gets_one_input_at_min_side() -> None:
    prep = Preprocessing(min_side=16)
    one = preprocess_multiscale(random_rgb(1, 1), prep)
    assert [t.shape for t in one] == [(3, 16, 16)]
    strip = preprocess_multiscale(random_rgb(5, 40), prep)
    assert [t.shape for t in strip] == [(3, 16, 128)]


def test_preprocess_multiscale_rejects_absurdly_thin_strips() -> None:
    with pytest.raises(InvalidImage, match="too thin"):
        preprocess_multiscale(random_rgb(2, 1024), Preprocessing(min_side=16))


def test_preprocess_multiscale_outputs_do_not_share_memory() -> None:
    tensors = preprocess_multiscale(random_rgb(64, 64), Preprocessing(scales=(1.0, 0.5, 1.0)))
    tensors[0][...] = 0
    assert not np.all(tensors[2] == 0)


# ------------------------------------------------------------------------ pool_scales


def test_pool_scales_mean_closed_form() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 8)).astype(np.float32)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    expected = unit.sum(axis=0) / 5
    expected /= np.linalg.norm(expected)
    out = pool_scales(v, Preprocessing())
    assert out.dtype == np.float32 and out.shape == (8,)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-6)


def test_pool_scales_max_and_without_per_scale_l2() -> None:
    v = np.array([[3.0, 0.0, 4.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    out_max = pool_scales(v, Preprocessing(scale_pooling="max"))
    np.testing.assert_allclose(out_max, np.array([0.6, 1.0, 0.8]) / np.sqrt(2.0), atol=1e-6)
    raw_mean = pool_scales(v, Preprocessing(per_scale_l2=False))
    np.testing.assert_allclose(raw_mean, np.array([3.0, 1.0, 4.0]) / np.sqrt(26.0), atol=1e-6)
    single = pool_scales(v[:1], Preprocessing())
    np.testing.assert_allclose(single, [0.6, 0.0, 0.8], atol=1e-6)
    with pytest.raises(ValueError):
        pool_scales(np.zeros((0, 3), dtype=np.float32), Preprocessing())


def test_photo_fixture_path_is_relative_to_repo(photo_path: Path) -> None:
    assert photo_path.name.endswith(".jpg") and "shared" in photo_path.parts


def test_decode_lifts_pillow_bomb_limit_to_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow would refuse 10k pixels at MAX_IMAGE_PIXELS=1000 (2x rule); our limit governs.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = encode(Image.fromarray(random_rgb(100, 100)), "PNG")
    assert decode_image(data, max_pixels=20_000).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 20_000
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 20_000  # never lowered


def test_decode_draft_mode_takes_an_exact_half() -> None:
    """1024 px under a 512 px cap: libjpeg's 1/2 scale gives the capped size directly."""
    data = encode(Image.fromarray(random_rgb(768, 1024)), "JPEG")
    assert decode_image(data, MAX_PIXELS, draft_max_side=512).shape == (384, 512, 3)
    # Just above half: no reduction possible without going below the cap.
    assert decode_image(data, MAX_PIXELS, draft_max_side=513).shape == (768, 1024, 3)
