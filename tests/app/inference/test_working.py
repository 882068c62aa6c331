"""The working image: DCT-scaled decode, EXIF orientation, bbox in upload pixels, one decode
for the embedding and the views, the official chain unchanged."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from app.artifacts import Preprocessing
from app.config import LimitSettings
from app.errors import InvalidImage, InvalidRequest, PayloadTooLarge
from app.inference import working
from app.inference.batcher import DynamicBatcher
from app.inference.embedder import Embedder
from app.inference.preprocess import (
    cap_long_side,
    decode_image,
    decode_pil,
    prepare_image,
)
from app.inference.working import (
    DecodedImage,
    decode_working_image,
    fast_multiscale,
    model_inputs,
)
from tests.app.onnx_models import write_artifact

MAX_PIXELS = 100_000_000
FAST = Preprocessing(
    max_side=512,
    scales=(0.7071, 1.0),
    colour_order="RGB",
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
    interpolation="bicubic",
    pixel_chain="fast",
)


def _smooth(width: int, height: int) -> np.ndarray:
    """[H,W,3] uint8 gradients (JPEG-friendly, no aliasing surprises)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]  # [1,W]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]  # [H,1]
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:, :, 0] = x
    out[:, :, 1] = y
    out[:, :, 2] = (x + y) / 2
    return out


def _jpeg(img: np.ndarray | Image.Image, quality: int = 90, exif: bytes | None = None) -> bytes:
    pil = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    pil.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


# ------------------------------------------------------------------------ DCT-scaled decode


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((4032, 3024), (1008, 756)),  # phone photo: 1/4 (1/8 would be 504 < 512)
        ((2000, 500), (1000, 250)),  # target size, not a square box: 1/2 still covers 512x128
        ((4400, 3000), (550, 375)),  # 1/8 (a 36 MP 7360x4912 photo decodes at 920x614)
        ((1024, 768), (512, 384)),  # exactly 1/2 covers the cap
        ((1000, 700), (1000, 700)),  # under 2x the cap: no reduced scale covers it
    ],
)
def test_dct_scaled_decode_is_the_smallest_scale_covering_the_cap(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    data = _jpeg(_smooth(*size))
    rgb, upload = decode_pil(data, MAX_PIXELS, draft_max_side=512)
    assert upload == size
    assert rgb.size == decoded
    assert max(rgb.size) >= min(512, max(size))
    img = decode_working_image(data, FAST, MAX_PIXELS, "fast")
    assert max(img.size) == min(512, max(size))
    assert img.upload_size == size
    assert img.pixels.dtype == np.uint8 and img.pixels.shape[2] == 3


def test_fast_decode_keeps_exif_orientation() -> None:
    # Stored 1600x800 with a red block top-left; orientation 6 = displayed rotated 90 deg CW.
    stored = _smooth(1600, 800)
    stored[:200, :300] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _jpeg(stored, exif=exif.tobytes())
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert reference.shape == (1600, 800, 3)  # displayed: 800 wide, 1600 tall

    img = decode_working_image(data, FAST, MAX_PIXELS, "fast")
    assert img.upload_size == (800, 1600)
    assert img.size == (256, 512)
    # The red block sits top-RIGHT once displayed; compare with the exact decode, downscaled.
    expected = np.asarray(Image.fromarray(reference).resize((256, 512), Image.Resampling.BOX))
    assert np.abs(img.pixels.astype(int) - expected.astype(int)).mean() < 3.0
    assert img.pixels[20, 240, 0] > 200 and img.pixels[20, 240, 1] < 60


def test_pixel_limit_is_checked_before_any_decode() -> None:
    data = _jpeg(_smooth(3000, 2000))
    with pytest.raises(PayloadTooLarge, match="3000x2000"):
        decode_working_image(data, FAST, 5_999_999, "fast")


def test_png_has_no_reduced_decode_but_is_capped() -> None:
    buf = io.BytesIO()
    Image.fromarray(_smooth(2400, 1800)).save(buf, "PNG")
    img = decode_working_image(buf.getvalue(), FAST, MAX_PIXELS, "fast")
    assert img.size == (512, 384) and img.upload_size == (2400, 1800)
    assert img.crop_scale == pytest.approx(512 / 2400)


# ------------------------------------------------------------------------ the two chains


def test_official_chain_is_unchanged(photo_bytes: bytes) -> None:
    """decode_working_image('official') + model_inputs == decode_image + prepare_image, bit
    for bit, with and without a bbox (official DOLG checkpoints keep their parity)."""
    prep = Preprocessing(max_side=700)
    img = decode_working_image(photo_bytes, prep, MAX_PIXELS, "official")
    full = decode_image(photo_bytes, MAX_PIXELS)
    np.testing.assert_array_equal(img.pixels, cap_long_side(full, 700))
    for bbox in (None, (100.0, 50.0, 900.0, 700.0)):
        ours = model_inputs(img, prep, bbox)
        ref = prepare_image(full, prep, bbox)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a, b)


def test_fast_chain_is_antialiased_bicubic_of_the_working_image() -> None:
    pixels = _smooth(512, 384)
    tensors = fast_multiscale(pixels, FAST)
    assert [t.shape for t in tensors] == [(3, 272, 362), (3, 384, 512)]
    expected = np.asarray(Image.fromarray(pixels).resize((362, 272), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(
        tensors[0], (expected.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-5
    )
    assert all(t.flags.c_contiguous and t.dtype == np.float32 for t in tensors)


def test_fast_and_official_descriptors_agree(
    tmp_path: Path, batcher: DynamicBatcher, executor: ThreadPoolExecutor, photo_bytes: bytes
) -> None:
    art = write_artifact(tmp_path, preprocessing=FAST)
    fast = Embedder(art.meta, batcher, executor, LimitSettings())
    official = Embedder(art.meta, batcher, executor, LimitSettings(), pixel_chain="official")
    assert (fast.chain, official.chain) == ("fast", "official")
    a = asyncio.run(fast.embed_bytes(photo_bytes))
    b = asyncio.run(official.embed_bytes(photo_bytes))
    assert float(a @ b) > 0.995


# ------------------------------------------------------------------------ bbox in upload pixels


def test_bbox_is_checked_in_upload_pixels() -> None:
    data = _jpeg(_smooth(1200, 400))
    img = decode_working_image(data, FAST, MAX_PIXELS, "fast")
    assert img.size == (512, 171)
    whole = model_inputs(img, FAST, (0, 0, 1200, 400))
    assert whole[-1].shape == (3, 171, 512)
    with pytest.raises(InvalidRequest, match="outside the 1200x400 image"):
        model_inputs(img, FAST, (0, 0, 1201, 400))
    with pytest.raises(InvalidRequest, match="outside the 1200x400 image"):
        model_inputs(img, FAST, (0, 0, 1300, 400))
    with pytest.raises(InvalidRequest, match="outside the 1200x400 image"):
        model_inputs(img, FAST, (0, 0, 1200, 401))


def test_bbox_maps_onto_a_dct_scaled_decode() -> None:
    """A region given in the upload's pixels crops the same content from a 1/4-scale decode
    as from the exact decode."""
    pixels = _smooth(2400, 1800)
    pixels[600:1200, 1200:1800] = (0, 0, 255)
    data = _jpeg(pixels)
    img = decode_working_image(data, FAST, MAX_PIXELS, "fast")  # decoded at 1/4: 600x450
    assert img.upload_size == (2400, 1800) and img.size == (512, 384)
    crop = model_inputs(img, FAST, (1200, 600, 1800, 1200))[-1]  # [3,h,w], RGB in [-1, 1]
    assert crop.shape[1:] == (128, 128)
    inner = crop[:, 4:-4, 4:-4]
    assert inner[2].min() > 0.9 and inner[0].max() < -0.9  # blue, nothing else


def test_too_thin_image_is_named_in_upload_pixels() -> None:
    buf = io.BytesIO()
    Image.fromarray(_smooth(20000, 50)).save(buf, "PNG")
    img = decode_working_image(buf.getvalue(), FAST, MAX_PIXELS, "fast")
    with pytest.raises(InvalidImage, match="20000x50 pixels"):
        model_inputs(img, FAST)


# ------------------------------------------------------------------------ one decode


def test_one_decode_serves_the_embedding_and_the_views(
    tmp_path: Path,
    batcher: DynamicBatcher,
    executor: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    photo_bytes: bytes,
) -> None:
    art = write_artifact(tmp_path, preprocessing=FAST)
    emb = Embedder(art.meta, batcher, executor, LimitSettings())
    calls: list[int] = []
    real = working.decode_pil

    def counting(data: bytes, *args: object, **kwargs: object) -> object:
        calls.append(len(data))
        return real(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(working, "decode_pil", counting)
    seen: list[DecodedImage] = []

    def record(decoded: DecodedImage) -> tuple[int, int]:
        seen.append(decoded)
        return decoded.size

    def grey(decoded: DecodedImage) -> np.ndarray:
        return decoded.grey(320)

    other = _jpeg(_smooth(800, 600))
    timings: dict[str, float] = {}
    vectors, views = asyncio.run(
        emb.embed_uploads([photo_bytes, other], timings, views={"size": record, "grey": grey})
    )
    assert len(calls) == 2  # one decode per upload, shared by the model and both views
    assert [v["size"] for v in views] == [(512, 384), (512, 384)]
    assert [np.asarray(v["grey"]).shape for v in views] == [(240, 320), (240, 320)]
    assert set(timings) == {"decode", "resize", "size", "grey", "inference"}
    # The views saw exactly the working image the model's inputs come from.
    np.testing.assert_array_equal(vectors[0], asyncio.run(emb.embed_bytes(photo_bytes)))
    assert not seen[0].pixels.flags.writeable


def test_large_decodes_trim_once_the_last_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import memory

    trims: list[int] = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: trims.append(1) or True)
    trimmer = memory.LargeDecodeTrimmer(min_pixels=1000)
    assert trimmer.begin(999) is False
    trimmer.end(False)
    a, b = trimmer.begin(1000), trimmer.begin(5000)
    trimmer.end(a)
    assert trims == []  # another large decode still holds its buffers
    trimmer.end(b)
    assert trims == [1] and trimmer.trims == 1
    assert memory.LargeDecodeTrimmer(min_pixels=0).begin(10**9) is False


def test_configure_malloc_applies_on_glibc() -> None:
    from app import memory

    if memory._libc() is None:
        pytest.skip("not glibc")
    assert memory.configure_malloc(0, 0) == {}
    assert memory.configure_malloc(2, 8 << 20, 32 << 20) == {
        "arena_max": 2,
        "mmap_threshold": 8 << 20,
        "trim_threshold": 32 << 20,
    }
