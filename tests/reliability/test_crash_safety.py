"""Crash safety of the real server process.

Two client threads index (JSON vectors, and small images) and delete while the server is
killed with SIGKILL at random moments, also while it is still recovering. After every restart:
every acknowledged add is present and is the top hit for its own vector (or image); no
acknowledged delete comes back; writes that never reached the server are absent; the live
count is exactly what the client knows; and no step needed a manual repair.

Requests in flight at the kill have no known outcome: the next restart decides them (present
or absent, either is correct), and from then on they are checked like the others.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.reliability.clients import (
    item_url,
    parallel,
    small_image,
    top_hit,
    top_hit_for_image,
    unit_vectors,
)
from tests.reliability.server import MakeServer, ServerProcess

logger = logging.getLogger(__name__)

# Client-side errors that mean the request may or may not have been applied.
_AMBIGUOUS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.TimeoutException)


@dataclass
class Ledger:
    """What the client knows. Items are keyed by id; each has a vector or an image (not both)."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)  # acknowledged adds, not deleted since
    deleted: set[str] = field(default_factory=set)  # acknowledged deletes
    unknown: set[str] = field(default_factory=set)  # in flight at a kill
    never_sent: set[str] = field(default_factory=set)  # connection refused: must be absent
    acked_adds: int = 0
    acked_deletes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CycleStats:
    cycles: int = 0
    startup_kills: int = 0
    lost: int = 0
    resurrected: int = 0
    checked: int = 0


class Writers:
    """Two threads: vector adds (batches of 1-4); image adds alternating with deletes."""

    def __init__(self, url: str, ledger: Ledger, seed: int, prefix: str) -> None:
        self.url = url
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.prefix = prefix
        self.stop = threading.Event()
        self.counter = 0
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guard, args=(self._vector_loop,), name="vectors"),
            threading.Thread(
                target=self._guard, args=(self._image_and_delete_loop,), name="images"
            ),
        ]

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # reported by join(): a thread must not fail silently
            self.errors.append(exc)

    def _next_id(self) -> str:
        with self.ledger.lock:
            self.counter += 1
            return f"{self.prefix}-{self.counter}"

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a writer thread hung"
        if self.errors:
            raise self.errors[0]

    def _attempt(self, ids: list[str], send: Callable[[], httpx.Response], ok: int) -> bool:
        """Send; on success return True; on a failure classify the ids and return False."""
        try:
            resp = send()
        except httpx.ConnectError:
            with self.ledger.lock:
                self.ledger.never_sent.update(ids)
            return False
        except _AMBIGUOUS:
            with self.ledger.lock:
                self.ledger.unknown.update(ids)
            return False
        assert resp.status_code == ok, resp.text
        return True

    def _vector_loop(self) -> None:
        ledger = self.ledger
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stop.is_set():
                n = self.rng.randint(1, 4)
                ids = [self._next_id() for _ in range(n)]
                vecs = unit_vectors(self.np_rng, n)
                with ledger.lock:
                    ledger.vectors.update(zip(ids, vecs, strict=True))
                items = [
                    {"id": i, "vector": v.tolist(), "metadata": {"n": k}}
                    for k, (i, v) in enumerate(zip(ids, vecs, strict=True))
                ]
                body = {"items": items}
                if self._attempt(
                    ids, lambda body=body: client.post("/index/vectors", json=body), 201
                ):
                    with ledger.lock:
                        ledger.live.update(ids)
                        ledger.acked_adds += n

    def _image_and_delete_loop(self) -> None:
        ledger = self.ledger
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stop.is_set():
                if self.rng.random() < 0.5:
                    item_id = self._next_id()
                    image = small_image(self.rng.randrange(2**31))
                    with ledger.lock:
                        ledger.images[item_id] = image
                    files = [("files", ("x.png", image, "image/png"))]
                    if self._attempt(
                        [item_id],
                        lambda f=files, i=item_id: client.post(
                            "/index", files=f, data={"ids": json.dumps([i])}
                        ),
                        201,
                    ):
                        with ledger.lock:
                            ledger.live.add(item_id)
                            ledger.acked_adds += 1
                else:
                    with ledger.lock:
                        candidates = sorted(ledger.live)
                    if not candidates:
                        time.sleep(0.01)
                        continue
                    victim = self.rng.choice(candidates)
                    with ledger.lock:
                        ledger.live.discard(victim)
                    if self._attempt(
                        [victim], lambda v=victim: client.delete(item_url(v)), 200
                    ):
                        with ledger.lock:
                            ledger.deleted.add(victim)
                            ledger.acked_deletes += 1
                    else:
                        with ledger.lock:
                            # A refused delete left the item as it was.
                            if victim in ledger.never_sent:
                                ledger.never_sent.discard(victim)
                                ledger.live.add(victim)


def _present(client: httpx.Client, item_id: str) -> bool:
    resp = client.get(item_url(item_id))
    assert resp.status_code in (200, 404), resp.text
    return resp.status_code == 200


def verify(server: ServerProcess, ledger: Ledger, stats: CycleStats, search: dict) -> None:
    """After a restart: settle unknown outcomes, then check every id the client knows."""
    with ledger.lock:
        unknown = sorted(ledger.unknown)
        never_sent = sorted(ledger.never_sent)
        ledger.unknown.clear()
        ledger.never_sent.clear()
    for item_id, present in zip(
        unknown, parallel(server.url, _present, unknown), strict=True
    ):
        ledger.deleted.discard(item_id)
        if present:
            ledger.live.add(item_id)
        else:
            ledger.live.discard(item_id)
    # Never reached the server: an add must be absent (a delete was put back in live above).
    wrongly_present = [
        i for i, p in zip(never_sent, parallel(server.url, _present, never_sent), strict=True)
        if p and i not in ledger.live
    ]
    assert not wrongly_present, f"writes that never reached the server exist: {wrongly_present}"

    def check_live(client: httpx.Client, item_id: str) -> str | None:
        if item_id in ledger.vectors:
            hit = top_hit(client, ledger.vectors[item_id], **search)
            ok = hit is not None and hit["id"] == item_id and hit["score"] > 0.99
        else:
            hit = top_hit_for_image(client, ledger.images[item_id])
            ok = hit is not None and hit["id"] == item_id
        if ok:
            return None
        got = client.get(item_url(item_id))
        return f"{item_id}: top hit {hit}; GET {got.status_code}"

    def check_deleted(client: httpx.Client, item_id: str) -> str | None:
        if _present(client, item_id):
            return f"{item_id}: deleted but GET finds it"
        if item_id in ledger.vectors:
            hit = top_hit(client, ledger.vectors[item_id], **search)
            if hit is not None and hit["id"] == item_id:
                return f"{item_id}: deleted but still the top hit for its vector"
        return None

    live, deleted = sorted(ledger.live), sorted(ledger.deleted)
    lost = [p for p in parallel(server.url, check_live, live) if p]
    back = [p for p in parallel(server.url, check_deleted, deleted) if p]
    stats.lost += len(lost)
    stats.resurrected += len(back)
    stats.checked += len(live) + len(deleted)
    assert not lost, f"{len(lost)} acknowledged adds lost, e.g. {lost[:5]}"
    assert not back, f"{len(back)} acknowledged deletes came back, e.g. {back[:5]}"
    with server.client() as client:
        index = client.get("/health").json()["index"]
    assert index["ntotal"] == len(ledger.live), (index, len(ledger.live))


def run_kill_cycles(
    server: ServerProcess,
    cycles: int,
    seed: int,
    startup_kill_rate: float = 0.0,
    search: dict | None = None,
) -> tuple[Ledger, CycleStats]:
    """`cycles` rounds of: start, verify, write for a random 0.2-1.2 s, SIGKILL."""
    rng = random.Random(seed)
    ledger, stats = Ledger(), CycleStats()
    search = search or {}
    for cycle in range(cycles):
        if rng.random() < startup_kill_rate and cycle > 0:
            # Kill while the store is recovering (or the model loading).
            server.spawn()
            time.sleep(rng.uniform(0.05, 1.0))
            server.kill()
            stats.startup_kills += 1
        server.start()
        verify(server, ledger, stats, search)
        writers = Writers(server.url, ledger, seed * 1000 + cycle, f"c{cycle}")
        writers.start()
        time.sleep(rng.uniform(0.2, 1.2))
        server.kill()
        writers.join()
        stats.cycles += 1
    server.start()
    verify(server, ledger, stats, search)
    server.kill()
    logger.info(
        "crash cycles: %d kills (+%d during startup), %d acknowledged adds, %d acknowledged "
        "deletes, %d ids checked, %d lost, %d resurrected",
        stats.cycles,
        stats.startup_kills,
        ledger.acked_adds,
        ledger.acked_deletes,
        stats.checked,
        stats.lost,
        stats.resurrected,
    )
    return ledger, stats


@pytest.mark.timeout(300)
def test_sigkill_while_indexing_loses_nothing_acknowledged(make_server: MakeServer) -> None:
    # Snapshots every 20 rows, so kills also land in the middle of snapshot writes.
    server = make_server(store__faiss__snapshot_every=20)
    ledger, stats = run_kill_cycles(server, cycles=3, seed=7)
    assert stats.cycles == 3 and stats.lost == 0 and stats.resurrected == 0
    assert ledger.acked_adds > 20 and ledger.acked_deletes > 0
    assert "Traceback" not in server.logs()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigkill_25_cycles_across_the_ivfpq_switch(make_server: MakeServer) -> None:
    """25 kills (some during startup recovery); the collection passes the IVF-PQ threshold
    part-way, so kills also hit background training and IVF-PQ snapshots."""
    server = make_server(
        store__faiss__snapshot_every=50,
        store__faiss__ivf_min_vectors=700,
        # Re-score every candidate exactly: "found as the top hit" must not depend on PQ.
        index__min_candidates=5000,
    )
    ledger, stats = run_kill_cycles(
        server, cycles=25, seed=11, startup_kill_rate=0.25, search={"nprobe": 1024}
    )
    assert stats.cycles == 25 and stats.lost == 0 and stats.resurrected == 0
    assert ledger.acked_adds > 700, "the run never reached the IVF-PQ threshold"
    logs = server.logs()
    assert "swapped in IVF" in logs or "loaded ivfpq snapshot" in logs or "trained IVF" in logs
    assert "Traceback" not in logs


# ------------------------------------------------------------------ damaged store files


def _fill(server: ServerProcess, n: int, seed: int) -> dict[str, np.ndarray]:
    vecs = unit_vectors(np.random.default_rng(seed), n)
    items = {f"d{i}": v for i, v in enumerate(vecs)}
    with server.client() as client:
        payload = [{"id": k, "vector": v.tolist()} for k, v in items.items()]
        assert client.post("/index/vectors", json={"items": payload}).status_code == 201
        for k in list(items)[:10]:
            assert client.delete(item_url(k)).status_code == 200
            del items[k]
    return items


def _check_all(server: ServerProcess, items: dict[str, np.ndarray], deleted: list[str]) -> None:
    def one(client: httpx.Client, k: str) -> str | None:
        hit = top_hit(client, items[k])
        return None if hit is not None and hit["id"] == k else f"{k}: {hit}"

    assert not [p for p in parallel(server.url, one, list(items)) if p]
    with server.client() as client:
        assert client.get("/health").json()["index"]["ntotal"] == len(items)
        assert all(client.get(item_url(k)).status_code == 404 for k in deleted)


def _snapshot_file(store: Path) -> Path:
    manifest = json.loads((store / "manifest.json").read_text())
    return store / manifest["index_file"]


@pytest.mark.timeout(300)
def test_damaged_store_files_lead_to_a_clean_logged_start(make_server: MakeServer) -> None:
    server = make_server()
    store = server.data_dir / "store"
    server.start()
    items = _fill(server, 300, seed=3)
    deleted = [f"d{i}" for i in range(10)]
    assert server.terminate() == 0  # final snapshot

    def restart_and_check(expect: list[str]) -> str:
        server.start()
        log = server.log()
        for needle in expect:
            assert re.search(needle, log), f"log lacks {needle!r}:\n{log[-3000:]}"
        assert "built flat index over 290 live rows from the catalog" in log
        _check_all(server, items, deleted)
        assert server.terminate() == 0
        return log

    # 1. Truncated snapshot, plus temp files a crash left behind mid-write.
    path = _snapshot_file(store)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (store / ".index-99.faiss.tmp").write_bytes(b"half a snapshot")
    (store / ".manifest.json.tmp").write_text('{"generation": ')
    restart_and_check(
        [
            r"removing stale temp file",
            r"truncated or extended index file .* moved aside to index-\d+\.faiss\.corrupt-",
        ]
    )
    assert not list(store.glob(".*.tmp"))
    assert list(store.glob("index-*.faiss.corrupt-*"))

    # 2. Same size, flipped bytes.
    path = _snapshot_file(store)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    restart_and_check([r"index file checksum mismatch; moved aside"])

    # 3. The manifest points at a generation whose file is missing.
    _snapshot_file(store).unlink()
    restart_and_check([r"manifest points at generation \d+ but index-\d+\.faiss is missing"])

    # 4. An unreadable manifest.
    (store / "manifest.json").write_text("{not json")
    restart_and_check([r"unreadable manifest .* moved aside to manifest\.json\.corrupt-"])
