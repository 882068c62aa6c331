"""Images -> unit descriptors: decode, cap, crop, multi-scale inputs, batched inference, pooling.

The same object serves the API (async, decode in a thread pool, never blocking the event loop)
and scripts (sync), so database and query descriptors come from one code path:

    bytes --decode_working_image--> DecodedImage (<= max_side, uint8) --crop (bbox, queries)-->
    --model_inputs--> S x [3,h_s,w_s] --batcher--> S x [D] --pool_scales--> [D] unit
    DecodedImage --views (thumbnail, ...)--> whatever each view returns

One decode serves the embedding and every view (app/inference/working.py). Each image's decode
runs in the executor while other images' scales run in the batcher, so with several uploads
in flight the decode threads and onnxruntime keep the cores busy together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from app.artifacts import ModelMeta
from app.config import LimitSettings
from app.errors import SimSearchError
from app.inference.batcher import DynamicBatcher
from app.inference.preprocess import BBox, pool_scales
from app.inference.working import (
    DecodedImage,
    PixelChain,
    decode_working_image,
    from_pixels,
    model_inputs,
)
from app.memory import LargeDecodeTrimmer

logger = logging.getLogger(__name__)

# A consumer of the decoded upload besides the model (a thumbnail, a grey view, ...). Runs in
# the decode thread right after the decode, on the working image; its result is returned.
ViewFn = Callable[[DecodedImage], object]


@dataclass
class EmbeddedImage:
    """One upload's descriptor [D] float32 and the results of the views asked for."""

    vector: np.ndarray
    views: dict[str, object] = field(default_factory=dict)
    upload_size: tuple[int, int] = (0, 0)


class Embedder:
    """Multi-scale descriptors as the artifact's pixel chain computes them
    (docs/ALGORITHMS.md 1.7).

    `timings` dicts, when passed, receive milliseconds under "decode" (including the long-side
    cap: the working image comes out of it), "resize" (crop and multi-scale tensors), one key
    per view (e.g. "thumbnail") and "inference" (submission to the last scale's result,
    queueing included); values are added to what is there, so one dict can sum several images.
    """

    def __init__(
        self,
        meta: ModelMeta,
        batcher: DynamicBatcher,
        executor: ThreadPoolExecutor,
        limits: LimitSettings,
        jpeg_draft: bool = False,
        pixel_chain: Literal["auto", "official", "fast"] = "auto",
        trimmer: LargeDecodeTrimmer | None = None,
    ) -> None:
        self.meta = meta
        self.prep = meta.preprocessing
        self.dim = meta.embedding_dim
        self.chain: PixelChain = (
            meta.preprocessing.pixel_chain if pixel_chain == "auto" else pixel_chain
        )
        self._batcher = batcher
        self._executor = executor
        self._limits = limits
        self._jpeg_draft = jpeg_draft
        self._trimmer = trimmer
        if len(self.prep.scales) > batcher.queue_size:
            raise ValueError(
                f"the inference queue ({batcher.queue_size} tensors) cannot hold the "
                f"{len(self.prep.scales)} scales of one image; raise inference.queue_size"
            )
        # Images embed_uploads keeps in flight: enough for same-shaped scales to share batches
        # and for every decode thread to work on the next image while one image's scales run
        # (the cores never wait on a decode), few enough that one bulk request cannot fill the
        # queue on its own.
        per_image = len(self.prep.scales)
        decoders = getattr(executor, "_max_workers", 1)
        self._many_in_flight = max(1, min(max(batcher.max_batch, decoders + 1),
                                          batcher.queue_size // (2 * per_image)))

    # ------------------------------------------------------------------ preprocessing

    def decode(self, data: bytes) -> DecodedImage:
        """Upload bytes -> the working image of this model's pixel chain. Blocking."""
        return decode_working_image(data, self.prep, self._limits.max_pixels, self.chain,
                                    jpeg_draft=self._jpeg_draft)

    def prepare_image(self, img: np.ndarray, bbox: BBox | None = None) -> list[np.ndarray]:
        """H,W,3 uint8 RGB (decoded at full size, e.g. by `decode_image`) -> the per-scale
        network inputs, through this model's chain (the bbox in `img`'s pixels)."""
        return model_inputs(from_pixels(img, self.prep, self.chain), self.prep, bbox)

    def _prepare_bytes(
        self, data: bytes, bbox: BBox | None, views: Mapping[str, ViewFn] | None
    ) -> tuple[list[np.ndarray], dict[str, object], tuple[int, int], dict[str, float]]:
        """Runs in the executor: bytes -> (tensors, view results, upload size, stage seconds).

        The decoded image is dropped before returning: only the small tensors and the views'
        results leave this function.
        """
        t0 = time.perf_counter()
        decoded = self.decode(data)
        large = self._trimmer.begin(decoded.upload_size[0] * decoded.upload_size[1]) \
            if self._trimmer is not None else False
        try:
            t1 = time.perf_counter()
            tensors = model_inputs(decoded, self.prep, bbox)
            seconds = {"decode": t1 - t0, "resize": time.perf_counter() - t1}
            results: dict[str, object] = {}
            for name, view in (views or {}).items():
                tv = time.perf_counter()
                results[name] = view(decoded)
                seconds[name] = time.perf_counter() - tv
            upload_size = decoded.upload_size
            del decoded
        finally:
            if self._trimmer is not None:
                self._trimmer.end(large)
        return tensors, results, upload_size, seconds

    # ------------------------------------------------------------------ async API

    async def embed_upload(
        self,
        data: bytes,
        bbox: BBox | None = None,
        timings: dict[str, float] | None = None,
        views: Mapping[str, ViewFn] | None = None,
    ) -> EmbeddedImage:
        """Uploaded image bytes -> descriptor + views, from one decode.

        Decoding, resizing and the views run in the executor; every scale is queued at once
        (atomically: Overloaded rejects the whole image) and the results are pooled.
        Raises InvalidImage / UnsupportedMediaType / PayloadTooLarge / InvalidRequest (bbox) /
        Overloaded, or whatever the session raised.
        """
        loop = asyncio.get_running_loop()
        tensors, results, upload_size, seconds = await loop.run_in_executor(
            self._executor, self._prepare_bytes, data, bbox, views
        )
        t0 = time.perf_counter()
        vectors = await self._infer(tensors)
        del tensors
        _add_timings(timings, **seconds, inference=time.perf_counter() - t0)
        return EmbeddedImage(pool_scales(vectors, self.prep), results, upload_size)

    async def embed_bytes(
        self, data: bytes, bbox: BBox | None = None, timings: dict[str, float] | None = None
    ) -> np.ndarray:
        """Uploaded image bytes -> [D] float32 unit descriptor (`embed_upload` without views)."""
        return (await self.embed_upload(data, bbox, timings)).vector

    async def embed_uploads(
        self,
        images: Sequence[bytes],
        timings: dict[str, float] | None = None,
        views: Mapping[str, ViewFn] | None = None,
        labels: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, list[dict[str, object]]]:
        """Several uploads -> ([N,D] float32, row i for images[i]; the views of each image).

        Images are processed concurrently (a bounded number in flight), so one image decodes
        while another's scales run. The first failure is raised with the image's label
        prefixed (labels[i], e.g. its file name; by default its position, "image 3: ..."),
        keeping its type.
        """
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32), []
        gate = asyncio.Semaphore(self._many_in_flight)

        async def one(i: int, data: bytes) -> EmbeddedImage:
            async with gate:
                try:
                    return await self.embed_upload(data, timings=timings, views=views)
                except SimSearchError as exc:
                    label = labels[i] if labels is not None else f"image {i}"
                    raise type(exc)(f"{label}: {exc}") from exc

        tasks = [asyncio.ensure_future(one(i, d)) for i, d in enumerate(images)]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()  # no point embedding the rest of a failed request
            raise
        vectors = np.stack([e.vector for e in done]).astype(np.float32, copy=False)
        return vectors, [e.views for e in done]

    async def embed_many(
        self,
        images: Sequence[bytes],
        timings: dict[str, float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Several uploads -> [N,D] float32, row i for images[i] (`embed_uploads`, no views)."""
        vectors, _ = await self.embed_uploads(images, timings, labels=labels)
        return vectors

    async def _infer(self, tensors: list[np.ndarray]) -> np.ndarray:
        futures = self._batcher.submit_many(tensors)
        try:
            rows = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except BaseException:
            for f in futures:
                f.cancel()  # drops scales that have not started running
            raise
        return np.stack(rows)  # [S,D]

    # ------------------------------------------------------------------ sync API (scripts)

    def embed_bytes_sync(
        self, data: bytes, bbox: BBox | None = None, timings: dict[str, float] | None = None
    ) -> np.ndarray:
        """Blocking `embed_bytes` for scripts; never call it on the event loop."""
        tensors, _, _, seconds = self._prepare_bytes(data, bbox, None)
        t0 = time.perf_counter()
        vectors = self._infer_sync(tensors)
        _add_timings(timings, **seconds, inference=time.perf_counter() - t0)
        return pool_scales(vectors, self.prep)

    def embed_image_sync(
        self, img: np.ndarray, bbox: BBox | None = None, timings: dict[str, float] | None = None
    ) -> np.ndarray:
        """Decoded H,W,3 uint8 RGB (e.g. from `decode_image`) -> [D] float32 unit descriptor.

        Applies the same cap / crop / scales as `embed_bytes` on an exact decode. Blocking.
        """
        t0 = time.perf_counter()
        tensors = self.prepare_image(img, bbox)
        t1 = time.perf_counter()
        vectors = self._infer_sync(tensors)
        _add_timings(timings, resize=t1 - t0, inference=time.perf_counter() - t1)
        return pool_scales(vectors, self.prep)

    def _infer_sync(self, tensors: list[np.ndarray]) -> np.ndarray:
        futures = self._batcher.submit_many(tensors)
        try:
            return np.stack([f.result() for f in futures])  # [S,D]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def warmup(self, side: int | None = None) -> float:
        """Run every scale once on a synthetic image (blocking); returns seconds taken.

        The image is side x 3/4 side (default: the meta's max_side), the typical photo shape,
        so the graph, memory arenas and kernels for realistic sizes are ready before the first
        request.
        """
        side = side or self.prep.max_side
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, size=(max(1, side * 3 // 4), side, 3), dtype=np.uint8)
        t0 = time.perf_counter()
        tensors = self.prepare_image(img)
        futures: list[Future[np.ndarray]] = self._batcher.submit_many(tensors)
        vectors = np.stack([f.result() for f in futures])
        pooled = pool_scales(vectors, self.prep)
        if pooled.shape != (self.dim,) or not np.all(np.isfinite(pooled)):
            raise RuntimeError(f"warm-up produced an invalid descriptor (shape {pooled.shape})")
        elapsed = time.perf_counter() - t0
        logger.info("warm-up: %d scales of a %dx%d image in %.2f s", len(tensors), img.shape[1],
                    img.shape[0], elapsed)
        return elapsed


def _add_timings(timings: dict[str, float] | None, **seconds: float) -> None:
    if timings is None:
        return
    for key, value in seconds.items():
        timings[key] = timings.get(key, 0.0) + value * 1e3
