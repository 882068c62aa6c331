"""Hostile and odd image files, made in memory (small on the wire, some huge once decoded)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo_like(size: tuple[int, int] = (256, 192), seed: int = 0) -> Image.Image:
    """Smooth colours plus a little noise: decodes like a photo, compresses like one."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC), np.int16)
    noise = rng.integers(-8, 9, size=base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with a (tiny) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF89a whose screen and only frame declare width x height, with 1 byte of LZW data."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global colour table of 2
    palette = b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02\x02\x44\x01\x00"  # min code size 2, one sub-block, terminator
    return b"GIF89a" + screen + palette + frame + lzw + b"\x3b"


def zlib_bomb_png(side: int) -> bytes:
    """A real, valid side x side RGB PNG of one colour: ~side^2 / 1000 bytes on the wire,
    side^2 x 3 bytes decoded (a decompression bomb that stays under max_pixels)."""
    raw_row = b"\x00" + b"\x7f\x40\x20" * side  # filter byte + pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(raw_row) for _ in range(side)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def multi_frame_gif() -> bytes:
    frames = [photo_like((64, 48), seed=s).convert("P") for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def multi_page_tiff() -> bytes:
    pages = [photo_like((64, 48), seed=s) for s in range(3)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def cmyk_jpeg() -> bytes:
    return encode(photo_like().convert("CMYK"), "JPEG", quality=90)


def gray16(fmt: str) -> bytes:
    ramp = (np.linspace(0, 65535, 256 * 192).reshape(192, 256)).astype(np.uint16)
    return encode(Image.fromarray(ramp), fmt)  # uint16 -> mode I;16


def huge_bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG with width x height pixels: a few KiB, over max_pixels."""
    return encode(Image.new("1", (width, height), 1), "PNG", optimize=False)


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
    b'<rect width="64" height="48" fill="red"/></svg>'
)
