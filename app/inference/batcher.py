"""Dynamic batching in front of one inference function (the onnxruntime session).

One worker thread owns `run_fn`; callers hand it single tensors [3,H,W] and get descriptors
[D] back through `concurrent.futures.Future`s, so asyncio code (`await submit(t)`) and plain
threads (`submit_sync(t)`) share one queue. Tensors of identical shape are stacked into one
[B,3,H,W] batch (B <= max_batch); different shapes never share a batch, because padding would
change the pooled (GeM / mean) descriptors. The oldest queued tensor always goes next, so no
shape starves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.errors import NotReady, Overloaded

logger = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """Metrics hook, called from the worker thread after every run (keep it cheap)."""

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        """size: tensors in the batch; queue_wait_s: how long the oldest of them waited
        between submission and the start of the run; run_s: run_fn wall time."""


@dataclass
class BatcherStats:
    """Counters since start (read without locking: approximate but monotonic)."""

    submitted: int = 0
    rejected: int = 0
    batches: int = 0
    tensors: int = 0
    failed_batches: int = 0
    cancelled: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    queue_wait_s: float = 0.0
    run_s: float = 0.0


@dataclass
class _Request:
    tensor: np.ndarray
    future: Future[np.ndarray]
    enqueued: float  # time.monotonic()

    @property
    def key(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.tensor.shape, self.tensor.dtype


class DynamicBatcher:
    """Bounded queue + one worker thread that stacks same-shaped tensors for `run_fn`.

    run_fn: [B,...] -> [B,D]; called only from the worker thread.
    max_batch: most tensors per run. max_wait_ms: how long the worker may hold the oldest
    tensor waiting for more of its shape (0 = take what is queued now, never wait).
    queue_size: most tensors waiting (not yet running); beyond it submissions raise Overloaded
    at once, so callers can answer 503 instead of queueing without bound.
    """

    def __init__(
        self,
        run_fn: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        observer: BatchObserver | None = None,
        name: str = "inference-batcher",
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self._run_fn = run_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self._observer = observer
        self.stats = BatcherStats()
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ submitting

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit_many(self, tensors: Sequence[np.ndarray]) -> list[Future[np.ndarray]]:
        """Queue several tensors atomically: all are admitted or Overloaded is raised.

        (One image's scales are admitted together, so an overloaded service rejects whole
        requests instead of running a part of one.)
        """
        if threading.current_thread() is self._worker:
            raise RuntimeError("run_fn must not submit to its own batcher (it would deadlock)")
        now = time.monotonic()
        requests = [_Request(t, Future(), now) for t in tensors]
        with self._cond:
            if self._closed:
                raise NotReady("the inference queue is shut down")
            if len(self._pending) + len(requests) > self.queue_size:
                self.stats.rejected += len(requests)
                raise Overloaded(
                    f"inference queue is full ({len(self._pending)} of {self.queue_size} "
                    "tensors waiting); retry shortly"
                )
            self._pending.extend(requests)
            self.stats.submitted += len(requests)
            self._cond.notify()
        return [r.future for r in requests]

    def submit_future(self, tensor: np.ndarray) -> Future[np.ndarray]:
        """Queue one tensor; the future resolves to run_fn's row for it (or its exception)."""
        return self.submit_many([tensor])[0]

    async def submit(self, tensor: np.ndarray) -> np.ndarray:
        """Await the [D] result for one [3,H,W] tensor. Raises Overloaded when the queue is
        full; cancelling the await drops the tensor if it has not started running."""
        return await asyncio.wrap_future(self.submit_future(tensor))

    def submit_sync(self, tensor: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Blocking variant for scripts and worker threads (never call it on the event loop)."""
        return self.submit_future(tensor).result(timeout)

    # ------------------------------------------------------------------ lifecycle

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting tensors; run what is queued (drain) or fail it with NotReady; join."""
        with self._cond:
            self._closed = True
            dropped: list[_Request] = []
            if not drain:
                dropped = list(self._pending)
                self._pending.clear()
            self._cond.notify_all()
        for request in dropped:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(NotReady("the inference queue was shut down"))
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)
            if self._worker.is_alive():
                logger.warning("batcher worker still busy after close(timeout=%s)", timeout)

    # ------------------------------------------------------------------ worker

    def _take_same_shape(
        self, key: tuple[tuple[int, ...], np.dtype], batch: list[_Request]
    ) -> None:
        """Move queued requests with this key into `batch` (up to max_batch), keeping the
        order of the others. Caller holds the lock."""
        if not self._pending or len(batch) >= self.max_batch:
            return
        kept: deque[_Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if len(batch) < self.max_batch and request.key == key:
                batch.append(request)
            else:
                kept.append(request)
        self._pending = kept

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and drained
            first = self._pending.popleft()
            batch = [first]
            self._take_same_shape(first.key, batch)
            # Hold the oldest tensor at most max_wait_s after its arrival for more company.
            deadline = first.enqueued + self.max_wait_s
            while len(batch) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                self._take_same_shape(first.key, batch)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            # Callers that gave up (cancelled futures) are dropped before running.
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            self.stats.cancelled += len(batch) - len(live)
            if live:
                self._run(live)

    def _run(self, batch: list[_Request]) -> None:
        start = time.monotonic()
        queue_wait_s = start - min(r.enqueued for r in batch)
        try:
            # [B,3,H,W]; a single tensor is viewed, not copied.
            stacked = batch[0].tensor[np.newaxis] if len(batch) == 1 else np.stack(
                [r.tensor for r in batch]
            )
            out = np.asarray(self._run_fn(stacked))
            if out.shape[0] != len(batch):
                raise RuntimeError(
                    f"run_fn returned {out.shape[0]} rows for a batch of {len(batch)}"
                )
        except Exception as exc:
            self.stats.failed_batches += 1
            logger.warning("inference batch of %d failed: %s", len(batch), exc)
            for request in batch:
                request.future.set_exception(exc)
            return
        run_s = time.monotonic() - start
        for i, request in enumerate(batch):
            request.future.set_result(out[i].copy())  # a row per caller, not a view of the batch
        size = len(batch)
        s = self.stats
        s.batches += 1
        s.tensors += size
        s.batch_sizes[size] = s.batch_sizes.get(size, 0) + 1
        s.queue_wait_s += queue_wait_s
        s.run_s += run_s
        if self._observer is not None:
            try:
                self._observer.on_batch(size, queue_wait_s, run_s)
            except Exception:
                logger.exception("batch observer failed")
