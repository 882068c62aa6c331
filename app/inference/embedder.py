"""Images -> unit descriptors: decode, cap, crop, multi-scale inputs, batched inference, pooling.

The same object serves the API (async, decode in a thread pool, never blocking the event loop)
and scripts (sync), so database and query descriptors come from one code path:

    bytes --decode_image--> H,W,3 uint8 --cap_long_side--> <= max_side --crop_bbox (queries)-->
    --preprocess_multiscale--> S x [3,h_s,w_s] --batcher--> S x [D] --pool_scales--> [D] unit
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from app.artifacts import ModelMeta
from app.config import LimitSettings
from app.errors import SimSearchError
from app.inference.batcher import DynamicBatcher
from app.inference.preprocess import BBox, decode_image, pool_scales, prepare_image

logger = logging.getLogger(__name__)


class Embedder:
    """Multi-scale DOLG descriptors as the official extraction computes them (ALGORITHMS.md 1.7).

    `timings` dicts, when passed, receive milliseconds under "decode", "preprocess" (cap, crop
    and multi-scale tensors) and "inference" (submission to the last scale's result, queueing
    included); values are added to what is there, so one dict can sum several images.
    """

    def __init__(
        self,
        meta: ModelMeta,
        batcher: DynamicBatcher,
        executor: ThreadPoolExecutor,
        limits: LimitSettings,
        jpeg_draft: bool = False,
    ) -> None:
        self.meta = meta
        self.prep = meta.preprocessing
        self.dim = meta.embedding_dim
        self._batcher = batcher
        self._executor = executor
        self._limits = limits
        self._jpeg_draft = jpeg_draft
        if len(self.prep.scales) > batcher.queue_size:
            raise ValueError(
                f"the inference queue ({batcher.queue_size} tensors) cannot hold the "
                f"{len(self.prep.scales)} scales of one image; raise inference.queue_size"
            )
        # Images embed_many keeps in flight: enough for same-shaped scales to share batches,
        # few enough that one bulk request cannot fill the queue on its own.
        per_image = len(self.prep.scales)
        self._many_in_flight = max(1, min(batcher.max_batch, batcher.queue_size // (2 * per_image)))

    # ------------------------------------------------------------------ preprocessing

    def _decode(self, data: bytes, bbox: BBox | None) -> np.ndarray:
        # A draft decode is smaller than the file's declared size, so a bbox given in original
        # pixels could not be mapped onto it: queries with a bbox always decode exactly.
        draft = self.prep.max_side if self._jpeg_draft and bbox is None else None
        return decode_image(data, self._limits.max_pixels, draft_max_side=draft)

    def prepare_image(self, img: np.ndarray, bbox: BBox | None = None) -> list[np.ndarray]:
        """H,W,3 uint8 RGB (as decoded) -> the per-scale network inputs (`prepare_image`)."""
        return prepare_image(img, self.prep, bbox)

    def _prepare_bytes(
        self,
        data: bytes,
        bbox: BBox | None,
        on_decoded: Callable[[np.ndarray], None] | None = None,
    ) -> tuple[list[np.ndarray], float, float]:
        """Runs in the executor: bytes -> (tensors, decode seconds, preprocess seconds).
        `on_decoded` sees the decoded H,W,3 uint8 RGB image (before cap and bbox crop), so a
        caller can use the pixels without a second decode (copy verification)."""
        t0 = time.perf_counter()
        img = self._decode(data, bbox)
        if on_decoded is not None:
            on_decoded(img)
        t1 = time.perf_counter()
        tensors = self.prepare_image(img, bbox)
        return tensors, t1 - t0, time.perf_counter() - t1

    # ------------------------------------------------------------------ async API

    async def embed_bytes(
        self,
        data: bytes,
        bbox: BBox | None = None,
        timings: dict[str, float] | None = None,
        on_decoded: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Uploaded image bytes -> [D] float32 unit descriptor.

        Decoding and resizing run in the executor; every scale is queued at once (atomically:
        Overloaded rejects the whole image) and the results are pooled.
        Raises InvalidImage / UnsupportedMediaType / PayloadTooLarge / InvalidRequest (bbox) /
        Overloaded, or whatever the session raised.
        """
        loop = asyncio.get_running_loop()
        tensors, decode_s, prep_s = await loop.run_in_executor(
            self._executor, self._prepare_bytes, data, bbox, on_decoded
        )
        t0 = time.perf_counter()
        vectors = await self._infer(tensors)
        _add_timings(timings, decode=decode_s, preprocess=prep_s,
                     inference=time.perf_counter() - t0)
        return pool_scales(vectors, self.prep)

    async def embed_many(
        self, images: Sequence[bytes], timings: dict[str, float] | None = None
    ) -> np.ndarray:
        """Several uploads -> [N,D] float32, row i for images[i].

        Images are processed concurrently (a bounded number in flight). The first failure is
        raised with the image's position prefixed ("image 3: ..."), keeping its type.
        """
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        gate = asyncio.Semaphore(self._many_in_flight)

        async def one(i: int, data: bytes) -> np.ndarray:
            async with gate:
                try:
                    return await self.embed_bytes(data, timings=timings)
                except SimSearchError as exc:
                    raise type(exc)(f"image {i}: {exc}") from exc

        tasks = [asyncio.ensure_future(one(i, d)) for i, d in enumerate(images)]
        try:
            rows = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()  # no point embedding the rest of a failed request
            raise
        return np.stack(rows).astype(np.float32, copy=False)

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
        t0 = time.perf_counter()
        img = self._decode(data, bbox)
        _add_timings(timings, decode=time.perf_counter() - t0)
        return self.embed_image_sync(img, bbox=bbox, timings=timings)

    def embed_image_sync(
        self, img: np.ndarray, bbox: BBox | None = None, timings: dict[str, float] | None = None
    ) -> np.ndarray:
        """Decoded H,W,3 uint8 RGB (e.g. from `decode_image`) -> [D] float32 unit descriptor.

        Applies the same cap / crop / scales as `embed_bytes`. Blocking.
        """
        t0 = time.perf_counter()
        tensors = self.prepare_image(img, bbox)
        t1 = time.perf_counter()
        futures = self._batcher.submit_many(tensors)
        try:
            vectors = np.stack([f.result() for f in futures])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        _add_timings(timings, preprocess=t1 - t0, inference=time.perf_counter() - t1)
        return pool_scales(vectors, self.prep)

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
