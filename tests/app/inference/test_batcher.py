from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from app.errors import NotReady, Overloaded
from app.inference.batcher import DynamicBatcher


class Recorder:
    """run_fn whose output encodes its input: row i = [identity of tensor i, batch size, H, W].

    Each submitted tensor is filled with its identity, so results prove correct routing.
    `gate` (when set) blocks every run until released, to let a queue build up.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.started = threading.Event()
        self.shapes: list[tuple[int, ...]] = []
        self.threads: set[str] = set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.shapes.append(batch.shape)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        b, _, h, w = batch.shape
        ident = batch[:, 0, 0, 0].astype(np.float32)
        return np.stack([ident, np.full(b, b), np.full(b, h), np.full(b, w)], axis=1)


def tensor(identity: float, h: int = 4, w: int = 5) -> np.ndarray:
    return np.full((3, h, w), identity, dtype=np.float32)


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float, float]] = []

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        self.calls.append((size, queue_wait_s, run_s))


@pytest.fixture
def gated() -> Iterator[tuple[DynamicBatcher, Recorder, threading.Event, Observer]]:
    gate = threading.Event()
    rec = Recorder(gate)
    obs = Observer()
    batcher = DynamicBatcher(rec, max_batch=4, max_wait_ms=0, queue_size=16, observer=obs)
    yield batcher, rec, gate, obs
    gate.set()
    batcher.close()


def test_single_submit_sync_roundtrip() -> None:
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=4, max_wait_ms=0, queue_size=4)
    try:
        out = batcher.submit_sync(tensor(7.0, 6, 9))
        assert out.tolist() == [7.0, 1.0, 6.0, 9.0]
        assert rec.threads == {"inference-batcher"}  # run_fn only ever runs on the worker
    finally:
        batcher.close()


def test_same_shape_requests_are_batched_and_routed(gated) -> None:
    batcher, rec, gate, obs = gated
    first = batcher.submit_future(tensor(0.0))
    assert rec.started.wait(5)  # the worker is busy with `first`; the rest queue up
    futures = [batcher.submit_future(tensor(float(i))) for i in range(1, 10)]
    gate.set()
    results = [f.result(5) for f in [first, *futures]]
    for i, row in enumerate(results):
        assert row[0] == i  # each caller got its own row
    sizes = [shape[0] for shape in rec.shapes]
    assert sizes == [1, 4, 4, 1]  # 9 queued tensors in batches of max_batch
    assert [c[0] for c in obs.calls] == sizes
    assert all(wait >= 0 and run >= 0 for _, wait, run in obs.calls)
    assert batcher.stats.tensors == 10 and batcher.stats.batches == 4
    assert batcher.stats.batch_sizes == {1: 2, 4: 2}


def test_different_shapes_never_share_a_batch(gated) -> None:
    batcher, rec, gate, _ = gated
    batcher.submit_future(tensor(-1.0))
    assert rec.started.wait(5)
    shapes = [(4, 5), (6, 5), (4, 5), (6, 7), (4, 5), (6, 5)]
    futures = [batcher.submit_future(tensor(float(i), h, w)) for i, (h, w) in enumerate(shapes)]
    gate.set()
    for i, (fut, (h, w)) in enumerate(zip(futures, shapes, strict=True)):
        ident, _, got_h, got_w = fut.result(5)
        assert (ident, got_h, got_w) == (i, h, w)
    # After the blocking first run: oldest first, each batch gathers its shape's tensors.
    assert [s[0] for s in rec.shapes[1:]] == [3, 2, 1]
    assert [s[2:] for s in rec.shapes[1:]] == [(4, 5), (6, 5), (6, 7)]


def test_async_submit_batches_concurrent_callers() -> None:
    rec = Recorder()
    # A generous max_wait lets the worker collect the concurrent submissions.
    batcher = DynamicBatcher(rec, max_batch=8, max_wait_ms=200, queue_size=32)

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit(tensor(float(i))) for i in range(8)))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert [r[0] for r in results] == list(range(8))
    assert max(s[0] for s in rec.shapes) > 1


def test_max_wait_zero_does_not_wait() -> None:
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=8, max_wait_ms=0, queue_size=8)
    try:
        t0 = time.perf_counter()
        batcher.submit_sync(tensor(1.0))
        assert time.perf_counter() - t0 < 0.5
    finally:
        batcher.close()


def test_max_wait_is_bounded() -> None:
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=8, max_wait_ms=50, queue_size=8)
    try:
        t0 = time.perf_counter()
        batcher.submit_sync(tensor(1.0))
        elapsed = time.perf_counter() - t0
        assert 0.04 <= elapsed < 1.0  # waited for company, then ran alone
    finally:
        batcher.close()


def test_full_queue_raises_overloaded_immediately() -> None:
    gate = threading.Event()
    small_rec = Recorder(gate)
    batcher = DynamicBatcher(small_rec, max_batch=1, max_wait_ms=0, queue_size=2)
    try:
        running = batcher.submit_future(tensor(0.0))
        assert small_rec.started.wait(5)
        queued = [batcher.submit_future(tensor(1.0)), batcher.submit_future(tensor(2.0))]
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="full"):
            batcher.submit_future(tensor(3.0))
        with pytest.raises(Overloaded):
            asyncio.run(batcher.submit(tensor(3.0)))
        assert time.perf_counter() - t0 < 0.5
        # All-or-nothing admission for several tensors.
        gate.set()
        assert [f.result(5)[0] for f in [running, *queued]] == [0.0, 1.0, 2.0]
        with pytest.raises(Overloaded):
            batcher.submit_many([tensor(float(i)) for i in range(3)])
        assert batcher.stats.rejected == 5
    finally:
        gate.set()
        batcher.close()


def test_run_fn_errors_reach_every_caller() -> None:
    def boom(batch: np.ndarray) -> np.ndarray:
        raise ValueError("graph exploded")

    batcher = DynamicBatcher(boom, max_batch=4, max_wait_ms=0, queue_size=8)
    try:
        with pytest.raises(ValueError, match="graph exploded"):
            batcher.submit_sync(tensor(1.0))

        async def main() -> None:
            await batcher.submit(tensor(2.0))

        with pytest.raises(ValueError, match="graph exploded"):
            asyncio.run(main())
        assert batcher.stats.failed_batches == 2
        # The worker survives a failing batch.
        assert not batcher.closed and batcher._worker.is_alive()
    finally:
        batcher.close()


def test_wrong_row_count_is_an_error() -> None:
    batcher = DynamicBatcher(lambda b: np.zeros((b.shape[0] + 1, 4)), max_batch=2,
                             max_wait_ms=0, queue_size=4)
    try:
        with pytest.raises(RuntimeError, match="rows"):
            batcher.submit_sync(tensor(1.0))
    finally:
        batcher.close()


def test_observer_errors_do_not_break_inference() -> None:
    class Broken:
        def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
            raise RuntimeError("metrics down")

    batcher = DynamicBatcher(Recorder(), max_batch=2, max_wait_ms=0, queue_size=4,
                             observer=Broken())
    try:
        assert batcher.submit_sync(tensor(5.0))[0] == 5.0
    finally:
        batcher.close()


def test_cancelled_requests_are_skipped(gated) -> None:
    batcher, rec, gate, _ = gated
    batcher.submit_future(tensor(0.0))
    assert rec.started.wait(5)
    doomed = batcher.submit_future(tensor(1.0))
    kept = batcher.submit_future(tensor(2.0))
    assert doomed.cancel()
    gate.set()
    assert kept.result(5)[0] == 2.0
    assert all(s[0] == 1 for s in rec.shapes[1:])  # the cancelled tensor never ran
    assert batcher.stats.cancelled == 1


def test_close_drains_then_refuses(gated) -> None:
    batcher, rec, gate, _ = gated
    futures = [batcher.submit_future(tensor(float(i))) for i in range(5)]
    assert rec.started.wait(5)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(NotReady):
        batcher.submit_future(tensor(9.0))
    gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert [f.result(0)[0] for f in futures] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not batcher._worker.is_alive()


def test_close_without_drain_fails_pending(gated) -> None:
    batcher, rec, gate, _ = gated
    running = batcher.submit_future(tensor(0.0))
    assert rec.started.wait(5)
    pending = batcher.submit_future(tensor(1.0))
    threading.Timer(0.05, gate.set).start()
    batcher.close(drain=False, timeout=5)
    assert running.result(5)[0] == 0.0
    with pytest.raises(NotReady):
        pending.result(0)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(Recorder(), max_batch=0, max_wait_ms=0, queue_size=1)
