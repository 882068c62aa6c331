"""Concurrency against the real server: 16 client threads mix searches (vectors and images),
adds, re-adds of the same ids (one owner, and a hot set several threads fight over) and
deletes for a bounded time, while the collection crosses the IVF-PQ threshold and the store
trains and swaps in the new index in the background.

Checked: zero 5xx and zero transport errors; no deadlock (every request has a timeout, every
thread must finish); read-your-writes for every acknowledged write (an add or re-add is the
top hit for its vector at once, a delete is gone at once); search results never hold an id
twice; and at the end the store holds exactly what was acknowledged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from tests.reliability.clients import (
    item_url,
    parallel,
    small_image,
    top_hit,
    unit_vectors,
)
from tests.reliability.server import MakeServer, ServerProcess

logger = logging.getLogger(__name__)

THREADS = 16
SEEDED = 1880
IVF_THRESHOLD = 2000
HOT_IDS = [f"hot-{i}" for i in range(8)]
# Exact answers whatever the index: probe every list, re-score every candidate.
EXACT = {"nprobe": 1024}
MAX_EXTRA_S = 60.0


@dataclass
class Load:
    requests: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Owner threads: id -> current vector (live) / ids deleted last.
    live: dict[str, np.ndarray] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    hot_acked: dict[str, list[np.ndarray]] = field(default_factory=dict)
    index_types: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    elapsed_s: float = 0.0


class Worker:
    def __init__(self, url: str, load: Load, seed: int) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)
        self.load = load
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.seed = seed

    def call(self, kind: str, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            resp = self.client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            with self.load.lock:
                self.load.server_errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            raise
        with self.load.lock:
            self.load.requests[kind] += 1
            if resp.status_code >= 500:
                self.load.server_errors.append(f"{kind}: {resp.status_code} {resp.text[:200]}")
        return resp

    def violation(self, text: str) -> None:
        with self.load.lock:
            self.load.violations.append(text)

    def search(self, vector: np.ndarray, top_k: int = 10) -> list[dict]:
        body = {"vector": vector.tolist(), "top_k": top_k, **EXACT}
        resp = self.call("search", "POST", "/search/vector", json=body)
        assert resp.status_code == 200, resp.text
        results = resp.json()["results"]
        ids = [r["id"] for r in results]
        if len(ids) != len(set(ids)):
            self.violation(f"duplicate ids in one result: {ids}")
        scores = [r["score"] for r in results]
        if scores != sorted(scores, reverse=True):
            self.violation(f"results not sorted by score: {scores}")
        return results

    def put(self, item_id: str, vector: np.ndarray, kind: str = "add") -> None:
        body = {"items": [{"id": item_id, "vector": vector.tolist(), "metadata": {"s": self.seed}}]}
        resp = self.call(kind, "POST", "/index/vectors", json=body)
        assert resp.status_code == 201, resp.text

    # ------------------------------------------------------------------ roles
    def owner(self) -> None:
        """Adds, re-adds and deletes its own ids; checks read-your-writes after each."""
        mine: dict[str, np.ndarray] = {}
        gone: set[str] = set()
        n = 0
        while not self.load.stop.is_set():
            op = self.rng.random()
            if op < 0.45 or not mine:
                n += 1
                item_id = f"own-{self.seed}-{n}"
                vec = unit_vectors(self.np_rng, 1)[0]
                self.put(item_id, vec)
                mine[item_id] = vec
                gone.discard(item_id)
            elif op < 0.65:
                item_id = self.rng.choice(sorted(mine))
                vec = unit_vectors(self.np_rng, 1)[0]
                self.put(item_id, vec, "re-add")
                mine[item_id] = vec
            elif op < 0.8:
                item_id = self.rng.choice(sorted(mine))
                resp = self.call("delete", "DELETE", item_url(item_id))
                assert resp.status_code == 200, resp.text
                if self.call("get", "GET", item_url(item_id)).status_code != 404:
                    self.violation(f"{item_id}: deleted but GET still finds it")
                vec = mine.pop(item_id)
                gone.add(item_id)
                top = self.search(vec, 1)
                if top and top[0]["id"] == item_id:
                    self.violation(f"{item_id}: deleted but still the top hit")
                continue
            else:
                self.search(unit_vectors(self.np_rng, 1)[0])
                continue
            top = self.search(vec, 1)
            if not top or top[0]["id"] != item_id or top[0]["score"] < 0.99:
                self.violation(f"{item_id}: acknowledged write not the top hit: {top[:1]}")
        with self.load.lock:
            self.load.live.update(mine)
            self.load.deleted.update(gone)

    def hot(self) -> None:
        """Re-adds ids that other hot threads re-add too."""
        while not self.load.stop.is_set():
            item_id = self.rng.choice(HOT_IDS)
            vec = unit_vectors(self.np_rng, 1)[0]
            with self.load.lock:
                self.load.hot_acked.setdefault(item_id, []).append(vec)  # may be acked
            self.put(item_id, vec, "hot re-add")
            results = self.search(vec, 3)
            if [r["id"] for r in results].count(item_id) > 1:
                self.violation(f"{item_id} twice in one result")

    def images(self) -> None:
        """Image searches and image adds (ids of its own)."""
        n = 0
        while not self.load.stop.is_set():
            n += 1
            image = small_image(self.seed * 100_000 + n)
            if self.rng.random() < 0.3:
                resp = self.call(
                    "image add", "POST", "/index",
                    files=[("files", ("a.png", image, "image/png"))],
                    data={"ids": f"img-{self.seed}-{n}"},
                )
                assert resp.status_code == 201, resp.text
                with self.load.lock:
                    self.load.live[f"img-{self.seed}-{n}"] = np.zeros(0)
            else:
                resp = self.call(
                    "image search", "POST", "/search",
                    files={"file": ("q.png", image, "image/png")}, data={"top_k": "5"},
                )
                assert resp.status_code == 200, resp.text

    def reader(self) -> None:
        """Random vector searches and item reads; watches the index type."""
        while not self.load.stop.is_set():
            self.search(unit_vectors(self.np_rng, 1)[0], self.rng.choice([1, 10, 50]))
            resp = self.call("get", "GET", item_url(f"seed-{self.rng.randrange(SEEDED)}"))
            assert resp.status_code == 200, resp.text
            health = self.call("health", "GET", "/health").json()
            with self.load.lock:
                self.load.index_types.append(health["index"]["type"])


def run_mixed_load(server: ServerProcess, seconds: float, seed: int) -> Load:
    load = Load()
    seeded = unit_vectors(np.random.default_rng(seed), SEEDED)
    with server.client(timeout=120.0) as client:
        for start in range(0, SEEDED, 500):
            items = [
                {"id": f"seed-{i}", "vector": seeded[i].tolist()}
                for i in range(start, min(SEEDED, start + 500))
            ]
            assert client.post("/index/vectors", json={"items": items}).status_code == 201
        hot = unit_vectors(np.random.default_rng(seed + 1), len(HOT_IDS))
        items = [{"id": i, "vector": v.tolist()} for i, v in zip(HOT_IDS, hot, strict=True)]
        assert client.post("/index/vectors", json={"items": items}).status_code == 201
        load.hot_acked = {i: [v] for i, v in zip(HOT_IDS, hot, strict=True)}
        assert client.get("/health").json()["index"]["type"] == "flat"
    # At least `seconds`; then until the readers have seen the IVF-PQ index serve (a slow
    # machine takes longer to cross the threshold), at most MAX_EXTRA_S more.
    start = time.monotonic()

    def stop_when_done() -> None:
        while time.monotonic() < start + seconds + MAX_EXTRA_S:
            if time.monotonic() >= start + seconds and "ivfpq" in load.index_types:
                break
            time.sleep(0.2)
        load.stop.set()

    roles: list[Callable[[Worker], None]] = (
        [Worker.owner] * 8 + [Worker.hot] * 3 + [Worker.images] * 2 + [Worker.reader] * 3
    )
    assert len(roles) == THREADS
    workers = [Worker(server.url, load, seed * 100 + i) for i in range(THREADS)]
    errors: list[BaseException] = []

    def run(worker: Worker, role: Callable[[Worker], None]) -> None:
        try:
            role(worker)
        except BaseException as exc:
            errors.append(exc)
        finally:
            worker.client.close()

    threads = [
        threading.Thread(target=run, args=(w, r), name=f"{r.__name__}-{i}")
        for i, (w, r) in enumerate(zip(workers, roles, strict=True))
    ]
    controller = threading.Thread(target=stop_when_done, name="controller")
    controller.start()
    for t in threads:
        t.start()
    controller.join()
    load.elapsed_s = time.monotonic() - start
    for t in threads:
        t.join(timeout=120)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running (deadlock?): {hung}"
    assert not load.server_errors, load.server_errors[:10]
    if errors:
        raise errors[0]
    assert not load.violations, load.violations[:10]

    # The background training finishes; then the store holds exactly what was acknowledged.
    with server.client() as client:
        for _ in range(600):
            index = client.get("/health").json()["index"]
            if not index["training"]:
                break
            time.sleep(0.1)
        assert index["type"] == "ivfpq" and not index["training"], index
        expected = SEEDED + len(load.live) + len(HOT_IDS)
        assert index["ntotal"] == expected, (index["ntotal"], expected)

    def check_owned(client: httpx.Client, item_id: str) -> str | None:
        vec = load.live[item_id]
        if vec.size == 0:  # an image add: present is enough
            return None if client.get(item_url(item_id)).status_code == 200 else item_id
        hit = top_hit(client, vec, **EXACT)
        return None if hit is not None and hit["id"] == item_id else f"{item_id}: {hit}"

    def check_deleted(client: httpx.Client, item_id: str) -> str | None:
        return None if client.get(item_url(item_id)).status_code == 404 else item_id

    def check_hot(client: httpx.Client, item_id: str) -> str | None:
        got = client.get(item_url(item_id), params={"include_vector": True}).json()["vector"]
        stored = np.asarray(got, dtype=np.float32)
        if not any(np.allclose(stored, v, atol=2e-3) for v in load.hot_acked[item_id]):
            return f"{item_id}: stored vector is none of the written ones"
        hit = top_hit(client, stored, **EXACT)
        return None if hit is not None and hit["id"] == item_id else f"{item_id}: {hit}"

    assert not [p for p in parallel(server.url, check_owned, sorted(load.live)) if p]
    assert not [p for p in parallel(server.url, check_deleted, sorted(load.deleted)) if p]
    assert not [p for p in parallel(server.url, check_hot, HOT_IDS) if p]
    return load


def _report(load: Load) -> None:
    total = sum(load.requests.values())
    logger.info(
        "mixed load: %d requests in %.0f s by %d threads (%s), 0 errors; index types seen %s",
        total,
        load.elapsed_s,
        THREADS,
        ", ".join(f"{k} {v}" for k, v in sorted(load.requests.items())),
        sorted(set(load.index_types)),
    )


@pytest.mark.timeout(400)
def test_16_clients_across_the_ivfpq_switch(make_server: MakeServer) -> None:
    server = make_server(
        store__faiss__ivf_min_vectors=IVF_THRESHOLD,
        index__min_candidates=5000,
        inference__max_wait_ms=2,
    )
    server.start()
    seconds = 20.0
    load = run_mixed_load(server, seconds, seed=1)
    _report(load)
    # The switch happened while the clients were running, not after.
    assert "flat" in load.index_types and "ivfpq" in load.index_types
    assert sum(load.requests.values()) > 300
    assert "swapped in IVF" in server.log() and "Traceback" not in server.log()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_16_clients_for_a_minute_with_retraining(make_server: MakeServer) -> None:
    server = make_server(
        store__faiss__ivf_min_vectors=IVF_THRESHOLD,
        index__min_candidates=8000,
        store__faiss__retrain_growth=1.2,
        store__faiss__snapshot_every=500,
        inference__max_wait_ms=2,
    )
    server.start()
    seconds = 60.0
    load = run_mixed_load(server, seconds, seed=2)
    _report(load)
    assert "flat" in load.index_types and "ivfpq" in load.index_types
    assert server.log().count("swapped in IVF") >= 2, "expected a retraining under load"
    assert "Traceback" not in server.log()
