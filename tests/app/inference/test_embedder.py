from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from app.artifacts import Preprocessing
from app.config import InferenceSettings, LimitSettings
from app.errors import InvalidImage, InvalidRequest, Overloaded, PayloadTooLarge
from app.inference.batcher import DynamicBatcher
from app.inference.embedder import Embedder
from app.inference.preprocess import cap_long_side, decode_image
from app.inference.session import OnnxSession
from tests.app.onnx_models import TinyArtifact, write_artifact


def _jpeg(img: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _reference_descriptor(img_rgb: np.ndarray, art: TinyArtifact) -> np.ndarray:
    """Official extraction done independently: cv2 chain + raw onnxruntime + mean + l2n."""
    cv2 = pytest.importorskip("cv2")
    prep = art.meta.preprocessing
    sess = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
    bgr = img_rgb[:, :, ::-1].astype(np.float32)
    h, w = img_rgb.shape[:2]
    mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
    acc = np.zeros(art.meta.embedding_dim, dtype=np.float64)
    for s in prep.scales:
        x = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
        x = ((x / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        v = sess.run(["embedding"], {"image": x})[0][0]
        acc += v / np.linalg.norm(v)
    acc /= len(prep.scales)
    return acc / np.linalg.norm(acc)


def test_embed_bytes_matches_official_extraction(
    embedder: Embedder, photo_bytes: bytes, tiny_artifact: TinyArtifact
) -> None:
    timings: dict[str, float] = {}
    vec = asyncio.run(embedder.embed_bytes(photo_bytes, timings=timings))
    assert vec.shape == (embedder.dim,) and vec.dtype == np.float32
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-6)
    img = decode_image(photo_bytes, LimitSettings().max_pixels)  # 1024x768: no cap
    np.testing.assert_allclose(vec, _reference_descriptor(img, tiny_artifact), atol=1e-5)
    assert set(timings) == {"decode", "resize", "inference"}
    assert all(v > 0 for v in timings.values())


def test_same_image_twice_gives_identical_vectors(embedder: Embedder, photo_bytes: bytes) -> None:
    async def main() -> tuple[np.ndarray, np.ndarray]:
        return await asyncio.gather(embedder.embed_bytes(photo_bytes),
                                    embedder.embed_bytes(photo_bytes))

    a, b = asyncio.run(main())
    np.testing.assert_array_equal(a, b)
    # The sync paths scripts use give the very same vector.
    np.testing.assert_array_equal(embedder.embed_bytes_sync(photo_bytes), a)
    img = decode_image(photo_bytes, LimitSettings().max_pixels)
    np.testing.assert_array_equal(embedder.embed_image_sync(img), a)


def test_bbox_is_cropped_after_the_cap(
    tiny_artifact: TinyArtifact, batcher: DynamicBatcher, executor: ThreadPoolExecutor
) -> None:
    prep = Preprocessing(max_side=256, scales=(0.7071, 1.0))
    emb = Embedder(tiny_artifact.meta.model_copy(update={"preprocessing": prep}), batcher,
                   executor, LimitSettings())
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)  # capped by 0.32 to 256x192
    data = _jpeg(big, quality=100)
    decoded = decode_image(data, 10**8)
    bbox = (100.0, 50.0, 500.0, 450.0)
    vec = asyncio.run(emb.embed_bytes(data, bbox=bbox))
    capped = cap_long_side(decoded, 256)
    crop = capped[16:144, 32:160]  # int(bbox * 0.32)
    expected = emb.embed_image_sync(crop)
    np.testing.assert_array_equal(vec, expected)
    np.testing.assert_array_equal(emb.embed_image_sync(decoded, bbox=bbox), vec)
    # The whole image as a bbox equals no bbox.
    whole = asyncio.run(emb.embed_bytes(data, bbox=(0, 0, 800, 600)))
    np.testing.assert_array_equal(whole, asyncio.run(emb.embed_bytes(data)))
    with pytest.raises(InvalidRequest, match="outside"):
        asyncio.run(emb.embed_bytes(data, bbox=(0, 0, 900, 600)))


def test_embed_many_rows_follow_inputs(embedder: Embedder, photo_bytes: bytes) -> None:
    other = _jpeg(np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    timings: dict[str, float] = {}
    out = asyncio.run(embedder.embed_many([photo_bytes, other, photo_bytes], timings=timings))
    assert out.shape == (3, embedder.dim) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], asyncio.run(embedder.embed_bytes(other)))
    assert float(out[0] @ out[1]) < 0.9999
    assert timings["decode"] > 0
    assert asyncio.run(embedder.embed_many([])).shape == (0, embedder.dim)


def test_embed_many_names_the_failing_image(embedder: Embedder, photo_bytes: bytes) -> None:
    with pytest.raises(InvalidImage, match=r"^image 1: "):
        asyncio.run(embedder.embed_many([photo_bytes, b"not an image"]))


def test_limits_are_applied(
    tiny_artifact: TinyArtifact, batcher: DynamicBatcher, executor: ThreadPoolExecutor,
    photo_bytes: bytes,
) -> None:
    emb = Embedder(tiny_artifact.meta, batcher, executor, LimitSettings(max_pixels=1000))
    with pytest.raises(PayloadTooLarge):
        asyncio.run(emb.embed_bytes(photo_bytes))


def test_tiny_image_is_embedded(embedder: Embedder) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 100, 50)).save(buf, "PNG")
    vec = asyncio.run(embedder.embed_bytes(buf.getvalue()))
    assert np.isfinite(vec).all() and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-6)


def test_warmup_runs_every_scale(embedder: Embedder, batcher: DynamicBatcher) -> None:
    before = batcher.stats.tensors
    assert embedder.warmup(side=128) > 0
    assert batcher.stats.tensors - before == len(embedder.meta.preprocessing.scales)


def test_overloaded_rejects_the_whole_image(
    tiny_artifact: TinyArtifact, executor: ThreadPoolExecutor, photo_bytes: bytes
) -> None:
    gate, started = threading.Event(), threading.Event()
    session = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                          InferenceSettings(providers="cpu", intra_op_threads=1))

    def slow_run(batch: np.ndarray) -> np.ndarray:
        started.set()
        gate.wait(10)
        return session.run(batch)

    batcher = DynamicBatcher(slow_run, max_batch=1, max_wait_ms=0, queue_size=6)
    emb = Embedder(tiny_artifact.meta, batcher, executor, LimitSettings())
    try:
        first = batcher.submit_future(np.zeros((3, 16, 16), dtype=np.float32))
        assert started.wait(5)
        blocker = batcher.submit_many([np.zeros((3, 16, 16), dtype=np.float32)] * 2)
        # 2 queued + 5 scales > 6: the image is refused as a whole, nothing of it queued.
        with pytest.raises(Overloaded):
            asyncio.run(emb.embed_bytes(photo_bytes))
        assert batcher.queue_depth == 2
        gate.set()
        for f in [first, *blocker]:
            f.result(5)
    finally:
        gate.set()
        batcher.close()


def test_queue_must_hold_one_image(
    tiny_artifact: TinyArtifact, executor: ThreadPoolExecutor
) -> None:
    batcher = DynamicBatcher(lambda b: b, max_batch=1, max_wait_ms=0, queue_size=4)
    try:
        with pytest.raises(ValueError, match="queue_size"):
            Embedder(tiny_artifact.meta, batcher, executor, LimitSettings())
    finally:
        batcher.close()


def test_jpeg_draft_is_close_to_exact(
    tmp_path: Path, batcher: DynamicBatcher, executor: ThreadPoolExecutor
) -> None:
    art = write_artifact(tmp_path, preprocessing=Preprocessing(max_side=256, scales=(1.0,)))
    yy, xx = np.mgrid[0:1600, 0:2400]
    smooth = np.stack([(xx / 10) % 255, (yy / 7) % 255, (xx + yy) / 16 % 255], axis=2)
    data = _jpeg(smooth.astype(np.uint8))
    exact = Embedder(art.meta, batcher, executor, LimitSettings())
    draft = Embedder(art.meta, batcher, executor, LimitSettings(), jpeg_draft=True)
    a = asyncio.run(exact.embed_bytes(data))
    b = asyncio.run(draft.embed_bytes(data))
    assert float(a @ b) > 0.99
