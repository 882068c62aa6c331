"""Pure preprocessing functions: upload bytes -> RGB pixels -> per-scale network inputs.

Used by the service, `workbench/build_index.py`, evaluation and BN calibration, so database and
query images go through exactly the same code. Every number comes from the model meta
(`app.artifacts.Preprocessing`); nothing here is specific to one checkpoint.

The chain reproduces the official DOLG test-time extraction (docs/ALGORITHMS.md 1.7): per scale s,
resize to (round(w*s), round(h*s)) with cv2.INTER_LINEAR semantics on float pixels (half-pixel
centres, no antialiasing, also when downscaling; `interpolation: "bicubic"` in the meta selects
cv2.INTER_CUBIC semantics instead, which torch's bicubic also computes), divide by 255,
subtract the mean and divide by the std in the model's colour order (BGR for the official
weights), lay out as CHW. Arbitrary uploads are additionally capped to a long side
(`Preprocessing.max_side`) once, before any crop or scale (docs/ALGORITHMS.md 7.11); that cap is
the only antialiased resize.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import threading
import zlib
from functools import lru_cache

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from app.artifacts import Preprocessing
from app.errors import InvalidImage, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

logger = logging.getLogger(__name__)

# (x1, y1, x2, y2), exclusive end, in pixels of the decoded (EXIF-oriented) image.
BBox = tuple[float, float, float, float]

# What we accept, as Pillow names the formats. MPO is how Pillow reports the multi-picture JPEGs
# many cameras write; it is a JPEG. Only these parsers ever see an upload: restricting
# `Image.open(formats=...)` keeps Pillow's rarer (and less hardened) readers off the attack surface.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_OPEN_FORMATS: tuple[str, ...] = ACCEPTED_FORMATS
_DECODED_FORMATS = frozenset((*ACCEPTED_FORMATS, "MPO"))
ACCEPTED_DESCRIPTION = "JPEG, PNG, WebP, GIF (first frame), BMP or TIFF (first page)"
# File-name suffixes of those formats: the files that folder tools (bulk indexing, calibration,
# photo recipes, evaluation) pick up. `models` and `simsearch_client` cannot import this floor
# and keep equal copies (tests/app/inference/test_image_suffixes.py holds them equal).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

# Magic numbers of image-like formats we do not accept, so a client hears "unsupported type"
# (415) instead of "broken image" (400). Checked only after Pillow's accepted readers gave up.
_FOREIGN_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "PDF"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x02\x00", 0, "CUR"),
    (b"qoif", 0, "QOI"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "JPEG XL"),
    (b"DDS ", 0, "DDS"),
    (b"icns", 0, "ICNS"),
)
_ISO_BMFF_BRANDS = {
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
    b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF",
}

# 16-bit and wider integer grayscale modes (PNG/TIFF/PPM); scaled to 8 bit, not clipped.
_WIDE_GRAY_MODES = frozenset(("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;16BS", "I", "I;32"))
_ALPHA_MODES = frozenset(("RGBA", "LA", "La", "RGBa", "PA"))

# Exceptions Pillow raises for broken or truncated files (zlib.error and struct.error are not
# OSErrors; SyntaxError comes from several header parsers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_PILLOW_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# Decoding


def decode_image(data: bytes, max_pixels: int, draft_max_side: int | None = None) -> np.ndarray:
    """Decode an upload into H,W,3 uint8 RGB (C-contiguous, writable).

    - The declared size is checked before any pixel is decoded (`Image.open` only parses the
      header): more than `max_pixels` raises PayloadTooLarge, so decompression bombs never
      allocate.
    - EXIF orientation is applied, so H,W are the displayed ones.
    - Only the first frame of animations / multi-page files is decoded.
    - Alpha (and palette / colour-key transparency) is composited on white; CMYK is converted
      naively (no ICC colour management); 16-bit and float grayscale are scaled to 8 bit.
    - `draft_max_side`: for JPEGs only, let libjpeg decode at 1/2, 1/4 or 1/8 scale while the
      long side stays >= draft_max_side (much faster for big photos; the result then differs
      slightly from an exact decode + antialiased downscale). None (the default) decodes exactly.
      The output of a draft decode is smaller than the file's declared size; `decode_pil`
      also returns the upload's size, to map coordinates given in its pixels.

    Raises InvalidImage (undecodable, truncated, empty), UnsupportedMediaType (a recognisable
    format we do not accept), PayloadTooLarge (too many pixels).
    """
    rgb, _ = decode_pil(data, max_pixels, draft_max_side)
    # np.asarray(PIL image) is a read-only view of a bytes copy; callers may write.
    return np.array(rgb, dtype=np.uint8, copy=True, order="C")


def decode_pil(
    data: bytes, max_pixels: int, draft_max_side: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """`decode_image` without the numpy copy: (loaded RGB Pillow image, upload size).

    The upload size is (width, height) of the whole file's first frame after EXIF orientation,
    whatever scale a draft decoded at: bboxes are given in those pixels. Same errors as
    `decode_image`.
    """
    if not data:
        raise InvalidImage(f"empty upload: expected an image file ({ACCEPTED_DESCRIPTION})")
    _ensure_pillow_bomb_limit(max_pixels)
    try:
        img = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS) fired inside open(); same meaning.
        raise PayloadTooLarge(f"image declares too many pixels ({exc}); at most {max_pixels} "
                              "are accepted") from exc
    except UnidentifiedImageError as exc:
        foreign = _sniff_foreign_format(data)
        if foreign is not None:
            raise UnsupportedMediaType(
                f"{foreign} images are not supported; accepted formats: {ACCEPTED_DESCRIPTION}"
            ) from exc
        raise InvalidImage(
            f"not a decodable image; accepted formats: {ACCEPTED_DESCRIPTION}"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(
            f"could not read the image header ({exc}); accepted formats: {ACCEPTED_DESCRIPTION}"
        ) from exc

    # No `with img:` here: closing a Pillow image frees its pixels, and the upright RGB case
    # returns `img` itself. The in-memory file needs no closing.
    fmt = img.format or "unknown"
    if fmt not in _DECODED_FORMATS:  # pragma: no cover - open(formats=...) prevents it
        raise UnsupportedMediaType(
            f"{fmt} images are not supported; accepted formats: {ACCEPTED_DESCRIPTION}"
        )
    width, height = img.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the {fmt} image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; at most {max_pixels} "
            "pixels are accepted"
        )
    if draft_max_side is not None and fmt in ("JPEG", "MPO"):
        _draft(img, draft_max_side)
    try:
        img.load()  # the first frame only: GIF/APNG/WebP/TIFF default to frame 0
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image decompresses to too many pixels ({exc})") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(
            f"could not decode the {fmt} image ({exc}); the file may be truncated or "
            f"corrupt; accepted formats: {ACCEPTED_DESCRIPTION}"
        ) from exc
    decoded_size = img.size
    oriented = _apply_exif_orientation(img)
    # Orientations 5-8 swap the axes; a draft scaled both axes alike.
    swapped = oriented.size != decoded_size
    upload_size = (height, width) if swapped else (width, height)
    try:
        rgb = _to_rgb(oriented)
    except _DECODE_ERRORS as exc:
        raise InvalidImage(
            f"could not convert the {fmt} image (mode {oriented.mode}) to RGB ({exc})"
        ) from exc
    rgb.format = fmt  # kept for callers (a converted copy has none)
    return rgb, upload_size


def _ensure_pillow_bomb_limit(max_pixels: int) -> None:
    """Keep Pillow's own decompression-bomb guard at or above our limit.

    Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS inside `Image.open` (default about
    179 Mpx) before our check runs. We keep that guard as a backstop but raise it when the
    configured max_pixels is higher, so our limit (and its message) is the one that applies.
    Never lowered, never disabled (None): other Pillow users in the process keep a guard.
    """
    if not _pillow_limit_below(max_pixels):
        return
    with _PILLOW_LIMIT_LOCK:
        if _pillow_limit_below(max_pixels):
            logger.info("raising Image.MAX_IMAGE_PIXELS from %s to max_pixels=%d",
                        Image.MAX_IMAGE_PIXELS, max_pixels)
            Image.MAX_IMAGE_PIXELS = max_pixels


def _pillow_limit_below(max_pixels: int) -> bool:
    current = Image.MAX_IMAGE_PIXELS
    return current is not None and current < max_pixels


def _sniff_foreign_format(data: bytes) -> str | None:
    head = data[:1024]
    for magic, offset, name in _FOREIGN_SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BMFF_BRANDS:
        return _ISO_BMFF_BRANDS[head[8:12]]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return "PNM"
    return None


def _draft(img: Image.Image, draft_max_side: int) -> None:
    """Ask libjpeg for a DCT-domain downscale (1/2, 1/4, 1/8) keeping long side >= target."""
    width, height = img.size
    ratio = draft_max_side / max(width, height)
    # Exactly 1/2 counts: a 1024 px photo under a 512 px cap decodes at 512 directly (the
    # common case for max_side 512), which also makes the LANCZOS cap a no-op.
    if ratio > 0.5:  # no power-of-two reduction possible
        return
    # Pillow picks the largest 1/2^k whose result is still >= the requested size per axis.
    target = (max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio)))
    # Keep the file's colour mode: draft("RGB") would only matter for YCbCr, which is the default.
    result = img.draft(img.mode, target)
    logger.debug("JPEG draft %sx%s -> %s (target %s)", width, height, result, target)


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip to the displayed orientation (EXIF tag 0x0112); no copy when upright."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (1, None):
            return img
        transposed = ImageOps.exif_transpose(img)
    except (*_DECODE_ERRORS, KeyError, TypeError) as exc:
        # A corrupt EXIF block is not a reason to refuse the pixels; use them as stored.
        logger.info("ignoring unreadable EXIF orientation: %s", exc)
        return img
    return transposed if transposed is not None else img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Transparent pixels become white."""
    mode = img.mode
    if mode in _WIDE_GRAY_MODES or mode == "F":
        gray = _wide_gray_to_uint8(np.asarray(img))
        return Image.fromarray(gray).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        # P/L/RGB with a transparency index or colour key go through RGBA too.
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return img
    # L, 1, P, CMYK (JPEG CMYK/YCCK arrive here as CMYK, Adobe inversion already undone by
    # Pillow), YCbCr, LAB, HSV. CMYK uses Pillow's naive formula; ICC profiles are ignored.
    return img.convert("RGB")


def _wide_gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float grayscale [H,W] -> uint8 [H,W].

    Integers within [0, 65535] are 16-bit samples: v/257 maps 65535 to 255 exactly (a plain
    clip to 255 would turn most of the range white). Other integer ranges and floats outside
    [0, 1] are min-max stretched; floats within [0, 1] are multiplied by 255. NaN/inf -> 0.
    """
    if values.dtype.kind in "ui":
        v = values.astype(np.int64, copy=False)
        lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return ((v + 128) // 257).astype(np.uint8)
        return _stretch(v.astype(np.float64))
    f = values.astype(np.float64, copy=False)
    finite = np.isfinite(f)
    f = np.where(finite, f, 0.0)
    if f.size and f.min() >= 0.0 and f.max() <= 1.0:
        return np.rint(f * 255.0).astype(np.uint8)
    return _stretch(f)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Long-side cap and query crop


_CAP_REDUCING_GAP = 3.0


def cap_scale(width: int, height: int, max_side: int) -> float:
    """Factor that `cap_long_side` applies to an image of this size (1.0 = untouched)."""
    long_side = max(width, height)
    return 1.0 if long_side <= max_side else max_side / long_side


def capped_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) after `cap_long_side`; the long side becomes exactly max_side."""
    scale = cap_scale(width, height, max_side)
    if scale == 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def cap_long_side(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale H,W,3 uint8 so that max(H, W) <= max_side; never upscales.

    Uses Pillow LANCZOS (antialiased; what cirtorch's `imresize` uses for the same purpose)
    with reducing_gap=3.0: beyond a 6x reduction Pillow first box-reduces by an integer
    factor, which its docs call indistinguishable from the exact result and which bounds the
    cost for very large photos. The result depends only on the pixels, never on the file.
    Returns `img` itself when it is already small enough.
    """
    height, width = img.shape[:2]
    new_w, new_h = capped_size(width, height, max_side)
    if (new_w, new_h) == (width, height):
        return img
    resized = Image.fromarray(np.ascontiguousarray(img)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=_CAP_REDUCING_GAP
    )
    return np.asarray(resized).copy()


def crop_bbox(
    img: np.ndarray,
    bbox: tuple[float, float, float, float],
    scale: float | tuple[float, float],
    upload_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Crop a query region given in UPLOAD pixels from the working image `img`.

    bbox = (x1, y1, x2, y2), exclusive end, in the coordinates of the uploaded (EXIF-oriented)
    image, before any draft decode or long-side cap; `scale` maps them onto `img`: the cap
    factor (`cap_scale`), or per axis (sx, sy) = working size / upload size. Coordinates are
    scaled, then truncated with int() as the official DOLG/CVNet code does
    (docs/ALGORITHMS.md 5.4).
    Cropping after the cap keeps the crop at the database scale (cirtorch does the same).
    `upload_size` (W, H): the box is checked against it, in the client's own pixels (x2 <= W,
    y2 <= H); without it, against `img` divided by the scale.
    Returns a view of `img` [y1:y2, x1:x2]. Raises InvalidRequest for an invalid box.
    """
    if len(bbox) != 4:
        raise InvalidRequest(f"bbox must be 4 numbers x1,y1,x2,y2; got {len(bbox)} values")
    try:
        x1, y1, x2, y2 = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"bbox must be 4 numbers x1,y1,x2,y2: {exc}") from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidRequest("bbox coordinates must be finite numbers")
    sx, sy = (scale, scale) if isinstance(scale, (int, float)) else scale
    if not all(math.isfinite(v) and v > 0 for v in (sx, sy)):
        raise InvalidRequest(f"invalid bbox scale {scale}")
    if x2 <= x1 or y2 <= y1:
        raise InvalidRequest(f"bbox ({x1}, {y1}, {x2}, {y2}) is empty: need x2 > x1 and y2 > y1")
    if x1 < 0 or y1 < 0:
        raise InvalidRequest(f"bbox ({x1}, {y1}, {x2}, {y2}) starts outside the image")
    height, width = img.shape[:2]
    if upload_size is not None:
        up_w, up_h = upload_size
        if x2 > up_w or y2 > up_h:
            raise InvalidRequest(
                f"bbox ({x1}, {y1}, {x2}, {y2}) extends outside the {up_w}x{up_h} image "
                "(x2 <= width and y2 <= height, in the uploaded image's pixels)"
            )
    ix1, iy1 = int(x1 * sx), int(y1 * sy)
    # In bounds in upload pixels stays in bounds here, float rounding of w / W * W aside.
    ix2, iy2 = int(x2 * sx), int(y2 * sy)
    if upload_size is not None:
        ix2, iy2 = min(ix2, width), min(iy2, height)
    elif ix2 > width or iy2 > height:
        orig_w, orig_h = round(width / sx), round(height / sy)
        raise InvalidRequest(
            f"bbox ({x1}, {y1}, {x2}, {y2}) extends outside the {orig_w}x{orig_h} image"
        )
    if ix2 <= ix1 or iy2 <= iy1:
        raise InvalidRequest(
            f"bbox ({x1}, {y1}, {x2}, {y2}) is smaller than one pixel at the working scale "
            f"(the image is processed at {width}x{height}); send a larger region"
        )
    return img[iy1:iy2, ix1:ix2]


# --------------------------------------------------------------------------------------------
# cv2.INTER_LINEAR-equivalent resize


@lru_cache(maxsize=512)
def _linear_taps(
    in_size: int, out_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of cv2.INTER_LINEAR along one axis.

    Mirrors cv2's resize setup: scale = 1 / (out/in); f = float((d + 0.5) * scale - 0.5);
    s = floor(f); frac = f - s; s < 0 -> (0, frac 0); s >= in-1 -> (in-1, frac 0). No
    antialiasing: a downscale samples 2 taps however large the factor.
    Returns (i0, i1, w0, w1), each [out_size]; i* intp, w* float32. Cached (read-only arrays).
    """
    scale = 1.0 / (out_size / in_size)
    pos = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(pos)
    frac = (pos - i0).astype(np.float32)
    i0 = i0.astype(np.intp)
    low = i0 < 0
    i0[low], frac[low] = 0, 0.0
    high = i0 >= in_size - 1
    i0[high], frac[high] = in_size - 1, 0.0
    i1 = np.minimum(i0 + 1, in_size - 1)
    w0 = (np.float32(1.0) - frac).astype(np.float32)
    w1 = frac.astype(np.float32)
    for arr in (i0, i1, w0, w1):
        arr.setflags(write=False)
    return i0, i1, w0, w1


# Keys' cubic convolution parameter used by cv2.INTER_CUBIC and torch's bicubic.
CUBIC_A = -0.75


@lru_cache(maxsize=512)
def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices [4,out] and weights [4,out] of cv2.INTER_CUBIC along one axis.

    f = (d + 0.5) * in/out - 0.5; s = floor(f); t = f - s; taps s-1..s+2 with indices clamped
    to [0, in-1] (replicated border; t itself is not clamped, unlike INTER_LINEAR); weights
    are Keys' cubic with a = -0.75 (they sum to one). No antialiasing when downscaling.
    """
    scale = 1.0 / (out_size / in_size)
    pos = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    start = np.floor(pos)
    t = (pos - start).astype(np.float32)
    a = np.float32(CUBIC_A)
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    weights = np.stack([w0, w1, w2, 1.0 - w0 - w1 - w2]).astype(np.float32)
    index = np.clip(start.astype(np.intp)[None, :] + np.arange(-1, 3)[:, None], 0, in_size - 1)
    for arr in (index, weights):
        arr.setflags(write=False)
    return index, weights


def _resize_axis(a: np.ndarray, axis: int, out_size: int, method: str = "bilinear") -> np.ndarray:
    """Linear (or cubic) resize of float32 `a` along one axis (cv2 semantics)."""
    in_size = a.shape[axis]
    if in_size == out_size:
        return a  # (d + 0.5) * 1 - 0.5 == d: the identity, as in cv2 (also for cubic)
    shape = [1] * a.ndim
    shape[axis] = out_size
    if method == "bicubic":
        index, weights = _cubic_taps(in_size, out_size)
        out = np.take(a, index[0], axis=axis)
        out *= weights[0].reshape(shape)
        for k in range(1, 4):
            tap = np.take(a, index[k], axis=axis)
            tap *= weights[k].reshape(shape)
            out += tap
        return out
    i0, i1, w0, w1 = _linear_taps(in_size, out_size)
    out = np.take(a, i0, axis=axis)
    out *= w0.reshape(shape)
    tap = np.take(a, i1, axis=axis)
    tap *= w1.reshape(shape)
    out += tap
    return out


def resize_bilinear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize H,W,C (or H,W) uint8/float32 to out_h,out_w(,C) float32 like cv2.INTER_LINEAR.

    Exactly cv2.resize(img.astype(np.float32), (out_w, out_h), interpolation=INTER_LINEAR)
    up to float rounding: half-pixel centres, edge clamping, no antialiasing when downscaling.
    Separable: rows first, then columns (both are 2-tap gathers with precomputed taps).
    """
    if out_w < 1 or out_h < 1:
        raise ValueError(f"output size must be positive, got {out_w}x{out_h}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected H,W or H,W,C, got shape {img.shape}")
    a = img.astype(np.float32, copy=False)
    out = _resize_axis(_resize_axis(a, 0, out_h), 1, out_w)
    if out is img or not out.flags.c_contiguous:
        out = np.array(out, dtype=np.float32, order="C", copy=True)
    return out


def resize_bicubic(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize H,W,C (or H,W) to out_h,out_w(,C) float32 like cv2.INTER_CUBIC on float input
    (half-pixel centres, a = -0.75, replicated border, no antialiasing)."""
    if out_w < 1 or out_h < 1:
        raise ValueError(f"output size must be positive, got {out_w}x{out_h}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected H,W or H,W,C, got shape {img.shape}")
    a = img.astype(np.float32, copy=False)
    out = _resize_axis(_resize_axis(a, 0, out_h, "bicubic"), 1, out_w, "bicubic")
    if out is img or not out.flags.c_contiguous:
        out = np.array(out, dtype=np.float32, order="C", copy=True)
    return out


# --------------------------------------------------------------------------------------------
# Multi-scale network inputs and pooling


def scale_sizes(
    width: int, height: int, prep: Preprocessing, upload_size: tuple[int, int] | None = None
) -> list[tuple[float, int, int]]:
    """(scale, w', h') for each scale kept for an image of this size.

    w', h' = round(w*s), round(h*s) with Python's round, as the official code. Scales giving a
    side < prep.min_side are skipped. When every scale is too small (a tiny image), one input is
    produced instead: the image upscaled so that its short side equals min_side. Raises
    InvalidImage when even that would be unreasonable (a strip thinner than min_side whose
    upscaled long side would exceed the largest input a max_side image produces); its message
    names `upload_size` (the client's W, H) when given, else width x height.
    """
    kept = []
    for s in prep.scales:
        w, h = round(width * s), round(height * s)
        if min(w, h) >= prep.min_side:
            kept.append((s, w, h))
    if kept:
        return kept
    factor = prep.min_side / min(width, height)
    w = max(prep.min_side, round(width * factor))
    h = max(prep.min_side, round(height * factor))
    limit = math.ceil(prep.max_side * max(1.0, *prep.scales))
    if max(w, h) > limit:
        shown_w, shown_h = upload_size or (width, height)
        working = "" if upload_size in (None, (width, height)) else (
            f" (processed at {width}x{height} under the {prep.max_side} px long-side cap)")
        raise InvalidImage(
            f"image of {shown_w}x{shown_h} pixels{working} is too thin to describe: its short "
            f"side would need {prep.min_side} px, making the long side {max(w, h)} px "
            f"(limit {limit})"
        )
    return [(factor, w, h)]


def normalise_planar(img: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """H,W,3 uint8 RGB -> 3,H,W float32 with (x / divisor - mean) / std in the model's order.

    Folded into one multiply-add per channel: x * (1 / (divisor * std)) + (-mean / std).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H,W,3 RGB image, got shape {img.shape}")
    order = [2, 1, 0] if prep.colour_order == "BGR" else [0, 1, 2]
    mean = np.asarray(prep.mean, dtype=np.float64)
    std = np.asarray(prep.std, dtype=np.float64)
    gain = (1.0 / (prep.pixel_divisor * std)).astype(np.float32)
    bias = (-mean / std).astype(np.float32)
    planes = np.empty((3, img.shape[0], img.shape[1]), dtype=np.float32)
    for c, src in enumerate(order):
        np.multiply(img[:, :, src], gain[c], out=planes[c], dtype=np.float32)
        planes[c] += bias[c]
    return planes


def preprocess_multiscale(
    img: np.ndarray, prep: Preprocessing, upload_size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """H,W,3 uint8 RGB -> one [3,h',w'] float32 C-contiguous network input per kept scale.

    Equals, per scale, the official chain (cv2 BGR float32 image, INTER_LINEAR resize to
    round(w*s) x round(h*s), /255, -mean, /std, HWC->CHW). The affine normalisation is applied
    once at source resolution and the planes are resized afterwards: bilinear (and bicubic)
    weights sum to one, so both orders give the same values (to ~1e-6) for about a quarter of
    the work.
    Scales that would make a side < prep.min_side are skipped (see `scale_sizes`; `upload_size`
    only names the client's size in its error).
    """
    height, width = img.shape[:2]
    sizes = scale_sizes(width, height, prep, upload_size)
    planes = normalise_planar(img, prep)  # [3,H,W]
    tensors: list[np.ndarray] = []
    for _, w, h in sizes:
        resized = _resize_planar(planes, w, h, prep.interpolation)
        if resized is planes and any(t is planes for t in tensors):
            resized = planes.copy()  # callers may own each output; never hand out one twice
        tensors.append(np.ascontiguousarray(resized))
    return tensors


def prepare_image(
    img: np.ndarray, prep: Preprocessing, bbox: BBox | None = None, cap: bool = True
) -> list[np.ndarray]:
    """H,W,3 uint8 RGB (as decoded) -> the per-scale network inputs [3,h,w] float32.

    The long-side cap applies to the whole image first; a bbox (x1,y1,x2,y2 in original
    pixels) is then scaled by the cap factor and cropped with int() truncation, so crops keep
    the database scale. cap=False skips the cap, as the official evaluation does (the crop is
    then exactly `im[int(y1):int(y2), int(x1):int(x2)]`). Raises InvalidRequest for a bad box.
    """
    height, width = img.shape[:2]
    scale = 1.0
    if cap:
        scale = cap_scale(width, height, prep.max_side)
        img = cap_long_side(img, prep.max_side)
    if bbox is not None:
        img = crop_bbox(img, bbox, scale, upload_size=(width, height))
    return preprocess_multiscale(img, prep, upload_size=(width, height))


def _resize_planar(
    planes: np.ndarray, out_w: int, out_h: int, method: str = "bilinear"
) -> np.ndarray:
    """[C,H,W] float32 -> [C,out_h,out_w], cv2.INTER_LINEAR (or INTER_CUBIC) semantics.

    Both separable orders give the same values (to float rounding); run first the pass whose
    output is smaller (columns first on ties, which measured slightly faster here).
    """
    _, height, width = planes.shape
    if height * out_w <= out_h * width:
        return _resize_axis(_resize_axis(planes, 2, out_w, method), 1, out_h, method)
    return _resize_axis(_resize_axis(planes, 1, out_h, method), 2, out_w, method)


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """x / max(||x||_2, eps) along `axis` (torch.nn.functional.normalize semantics)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, eps)


def pool_scales(vectors: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """[S,D] per-scale descriptors -> [D] float32 unit descriptor.

    Official DOLG: l2n per scale, sum / S, l2n (== mean then l2n). SuperGlobal's Scale-GeM
    default is the max of the per-scale unit vectors ("max").
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"expected [S,D] with S >= 1, got shape {v.shape}")
    if prep.per_scale_l2:
        v = l2_normalize(v, axis=1)
    pooled = v.mean(axis=0) if prep.scale_pooling == "mean" else v.max(axis=0)
    return l2_normalize(pooled).astype(np.float32)
