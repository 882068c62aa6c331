"""`MilvusStore` consistency on a real Milvus server: two stores on one collection stand for two
API replicas. Under Strong (the default) an add or delete acknowledged through one is seen
through the other at once, whichever side pays Milvus's time-tick wait (`store.milvus.strong_wait`);
with "write", reads do not wait for a tick and acknowledgements do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from app.index.milvus_store import MilvusStore
from tests.app.index.backends import MilvusHarness
from tests.app.index.data import sphere_blobs
from workbench.servers.milvus_server import LocalMilvus

pytestmark = pytest.mark.milvus

DIM = 32


@pytest.fixture(params=["write", "read"])
def replicas(
    request: pytest.FixtureRequest, milvus_server: LocalMilvus
) -> Iterator[tuple[MilvusStore, MilvusStore]]:
    harness = MilvusHarness(milvus_server.uri, strong_wait=request.param)
    a, b = harness.open(DIM, None), harness.open(DIM, None)
    try:
        assert isinstance(a, MilvusStore) and isinstance(b, MilvusStore)
        yield a, b
    finally:
        a.close()
        b.close()
        harness.cleanup()


def median_ms(fn: object, repeats: int = 15) -> float:
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def test_acknowledged_writes_are_seen_through_the_other_replica_at_once(
    replicas: tuple[MilvusStore, MilvusStore],
) -> None:
    a, b = replicas
    vecs = sphere_blobs(40, DIM, clusters=4, seed=3)
    ids = [f"r{i}" for i in range(40)]
    # Several rounds: each read follows its write immediately, with no pause in between.
    for round_ in range(5):
        chunk = slice(round_ * 8, round_ * 8 + 8)
        a.add(ids[chunk], vecs[chunk], [{"round": round_}] * 8)
        assert b.contains(ids[chunk]) == set(ids[chunk])
        got = b.get(ids[chunk][3], with_vector=True)
        assert got is not None and got.metadata == {"round": round_}
        assert got.vector is not None and float(got.vector @ vecs[chunk][3]) > 0.999
        hits = b.search(vecs[chunk], 1)
        assert [h[0].id for h in hits] == ids[chunk]
        assert len(b) == 8 * (round_ + 1)
        gone = ids[chunk][5]
        assert b.delete(gone) is True
        assert a.get(gone) is None and gone not in a.contains(ids[chunk])
        assert all(h.id != gone for h in a.search(vecs[chunk][5:6], 8)[0])
        assert a.delete(gone) is False
        a.add([gone], vecs[chunk][5:6])  # back, for the count above
        assert b.search(vecs[chunk][5:6], 1)[0][0].id == gone


def test_reads_wait_for_the_time_tick_only_when_writes_do_not(
    replicas: tuple[MilvusStore, MilvusStore], milvus_server: LocalMilvus
) -> None:
    """The session's server ticks every 20 ms: a Strong read waits one to two ticks, a
    Bounded one does not wait at all (about 2-3 ms here)."""
    a, b = replicas
    vecs = sphere_blobs(20, DIM, clusters=2, seed=4)
    a.add([f"t{i}" for i in range(20)], vecs)
    tick = milvus_server.time_tick_ms
    search = median_ms(lambda: b.search(vecs[:1], 5))
    get = median_ms(lambda: b.get("t3"))
    if a.settings.strong_wait == "write":
        assert search < tick and get < tick, (search, get)
        ack = median_ms(lambda: a.add(["t0"], vecs[:1]), repeats=5)
        assert ack > 0.75 * tick, ack
    else:
        assert search > 0.75 * tick and get > 0.75 * tick, (search, get)
