"""Overload and shutdown of the real server.

- A full inference queue answers 503 with Retry-After instead of queueing without bound; the
  server recovers as soon as the burst ends.
- Admission control: beyond max_in_flight requests in progress the answer is 503 with
  Retry-After at once, while /health/live keeps answering.
- Per-request deadline: work that cannot finish in limits.request_timeout_s is answered 503
  with Retry-After (an image add that timed out stored nothing).
- SIGTERM: in-flight requests finish, the process exits 0, the store is consistent (every
  acknowledged add is there, nothing is left to replay).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.reliability import images
from tests.reliability.clients import item_url, parallel, top_hit, unit_vectors
from tests.reliability.conftest import MakeServer

logger = logging.getLogger(__name__)

PHOTO = images.encode(images.photo_like((640, 480)), "JPEG", quality=90)


def _search_image(client: httpx.Client) -> httpx.Response:
    return client.post("/search", files={"file": ("q.jpg", PHOTO, "image/jpeg")})


@pytest.mark.timeout(300)
def test_full_inference_queue_answers_503_with_retry_after(make_server: MakeServer) -> None:
    # The queue holds exactly one image's two scales; 16 clients overflow it at once.
    server = make_server(inference__queue_size=2, inference__max_batch=1)
    server.start()
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + 30

    def client_loop() -> None:
        with server.client() as client:
            while not stop.is_set() and time.monotonic() < deadline:
                resp = _search_image(client)
                with lock:
                    statuses[resp.status_code] += 1
                    if resp.status_code == 503:
                        if resp.headers.get("retry-after") != "2" or "queue is full" not in (
                            resp.json()["detail"]
                        ):
                            bad.append(f"{resp.headers} {resp.text}")
                        if statuses[503] >= 20 and statuses[200] >= 20:
                            stop.set()
                    elif resp.status_code != 200:
                        bad.append(f"{resp.status_code} {resp.text}")

    threads = [threading.Thread(target=client_loop) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    logger.info("inference queue of 2 under 16 clients: %s", dict(statuses))
    assert not bad, bad[:5]
    assert statuses[503] >= 1 and statuses[200] >= 1, statuses
    assert set(statuses) <= {200, 503}
    # The burst is over: the server answers normally again.
    with server.client() as client:
        assert client.get("/health/ready").status_code == 200
        assert _search_image(client).status_code == 200


def _slow_body(items: list[dict], started: threading.Event, pause: float) -> Iterator[bytes]:
    """A JSON body streamed in pieces (chunked, no Content-Length) with pauses between them."""
    text = json.dumps({"items": items}).encode()
    step = max(1, len(text) // 6)
    for i in range(0, len(text), step):
        yield text[i : i + step]
        started.set()
        time.sleep(pause)


@pytest.mark.timeout(300)
def test_in_flight_limit_and_request_deadline_answer_503(make_server: MakeServer) -> None:
    server = make_server(limits__max_in_flight=2, limits__request_timeout_s=0.001)
    server.start()
    vecs = unit_vectors(np.random.default_rng(0), 4)
    results: dict[int, httpx.Response] = {}
    started = [threading.Event(), threading.Event()]

    def slow_add(k: int) -> None:
        items = [{"id": f"slow-{k}-{j}", "vector": vecs[2 * k + j].tolist()} for j in range(2)]
        with server.client() as client:
            results[k] = client.post(
                "/index/vectors",
                content=_slow_body(items, started[k], pause=0.25),
                headers={"content-type": "application/json"},
            )

    threads = [threading.Thread(target=slow_add, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    assert all(e.wait(10) for e in started)
    time.sleep(0.1)
    with server.client() as client:
        # Both slots are taken by the slow uploads: refused at once, not queued.
        resp = client.post("/search/vector", json={"vector": vecs[0].tolist()})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "2", resp.text
        assert "requests in progress" in resp.json()["detail"]
        # Probes are never refused for load.
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
    for t in threads:
        t.join(timeout=30)
    assert [results[k].status_code for k in range(2)] == [201, 201]

    with server.client() as client:
        # A 1 ms deadline: decoding and embedding a 640x480 JPEG cannot make it.
        resp = _search_image(client)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "2", resp.text
        assert "request deadline" in resp.json()["detail"]
        resp = client.post(
            "/index",
            files=[("files", ("a.jpg", PHOTO, "image/jpeg"))],
            data={"ids": "late"},
        )
        assert resp.status_code == 503 and "request deadline" in resp.json()["detail"]
        assert client.get(item_url("late")).status_code == 404  # nothing half-written
        assert client.get(item_url("slow-1-1")).status_code == 200
        assert client.get("/health/ready").status_code == 200
    assert "Traceback" not in server.log()


@pytest.mark.timeout(300)
def test_sigterm_finishes_in_flight_requests_and_leaves_the_store_consistent(
    make_server: MakeServer,
) -> None:
    server = make_server()
    server.start()
    rng = np.random.default_rng(3)
    acked: dict[str, np.ndarray] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        """A steady stream of small adds until the server goes away."""
        n = 0
        with server.client() as client:
            while not stop.is_set():
                n += 1
                vec = unit_vectors(rng, 1)[0]
                try:
                    resp = client.post(
                        "/index/vectors",
                        json={"items": [{"id": f"w-{n}", "vector": vec.tolist()}]},
                    )
                except httpx.HTTPError:
                    return  # the listener closed: not acknowledged
                if resp.status_code != 201:
                    return
                with lock:
                    acked[f"w-{n}"] = vec
                time.sleep(0.01)

    slow_items = {f"slow-{j}": v for j, v in enumerate(unit_vectors(rng, 20))}
    slow_started = threading.Event()
    slow_result: list[httpx.Response] = []

    def slow_request() -> None:
        items = [{"id": k, "vector": v.tolist()} for k, v in slow_items.items()]
        with server.client() as client:
            slow_result.append(
                client.post(
                    "/index/vectors",
                    content=_slow_body(items, slow_started, pause=0.3),
                    headers={"content-type": "application/json"},
                )
            )

    threads = [threading.Thread(target=writer), threading.Thread(target=slow_request)]
    for t in threads:
        t.start()
    assert slow_started.wait(10)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert server.proc is not None
    code = server.terminate(timeout=60)
    shutdown_s = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert code == 0, server.log()[-3000:]
    assert shutdown_s < 30
    # The request that was being uploaded when SIGTERM arrived was served in full.
    assert slow_result and slow_result[0].status_code == 201, slow_result
    acked.update(slow_items)
    log = server.log()
    assert "shutting down: draining" in log and "store closed" in log
    assert "shutdown complete after signal SIGTERM" in log
    assert "Traceback" not in log
    logger.info(
        "SIGTERM: exit 0 after %.1f s with an upload in flight; %d acknowledged adds",
        shutdown_s,
        len(acked),
    )

    server.start()
    # The final snapshot covered every row: nothing to replay, no rebuild.
    assert re.search(r"loaded flat snapshot generation \d+ \(\d+ rows\) and replayed 0 rows",
                     server.log()), server.log()[-2000:]

    def check(client: httpx.Client, item_id: str) -> str | None:
        hit = top_hit(client, acked[item_id])
        return None if hit is not None and hit["id"] == item_id else f"{item_id}: {hit}"

    assert not [p for p in parallel(server.url, check, sorted(acked)) if p]
    with server.client() as client:
        assert client.get("/health").json()["index"]["ntotal"] >= len(acked)
    assert server.terminate() == 0
