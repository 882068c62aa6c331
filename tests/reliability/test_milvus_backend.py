"""The service on the Milvus backend, against a real Milvus server: stateless replicas,
Milvus going away and coming back, and SIGKILL of the API and of Milvus during adds.

Every API process here is the real `python -m app` with SIMSEARCH_STORE__BACKEND=milvus; the
Milvus server is the session's (tests/conftest.py), restarted in place by the crash test.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import httpx
import numpy as np
import pytest

from tests.reliability.clients import item_url, top_hit, unit_vectors
from tests.reliability.server import MakeServer, ServerProcess
from workbench.servers.milvus_server import LocalMilvus

pytestmark = pytest.mark.milvus

_collections = itertools.count()


def milvus_settings(server: LocalMilvus) -> dict[str, object]:
    return {
        "store__backend": "milvus",
        "store__milvus__uri": server.uri,
        "store__milvus__collection": f"replicas_{os.getpid()}_{next(_collections)}",
        # Short per-call deadline: requests fail fast (503) while Milvus is down.
        "store__milvus__timeout_s": 3,
    }


def index_vectors(client: httpx.Client, ids: list[str], vectors: np.ndarray) -> httpx.Response:
    items = [
        {"id": i, "vector": [float(x) for x in v], "metadata": {"n": n}}
        for n, (i, v) in enumerate(zip(ids, vectors, strict=True))
    ]
    return client.post("/index/vectors", json={"items": items})


def test_two_replicas_share_one_collection(
    make_server: MakeServer, milvus_server: LocalMilvus
) -> None:
    settings = milvus_settings(milvus_server)
    a, b = make_server(**settings), make_server(**settings)
    a.start()
    b.start()
    rng = np.random.default_rng(0)
    vecs = unit_vectors(rng, 20)
    ids = [f"replica/{i}" for i in range(20)]
    with a.client() as ca, b.client() as cb:
        assert index_vectors(ca, ids, vecs).status_code == 201
        # Indexed through A: found, fetched and deleted through B right away (Strong reads).
        for i in (0, 7, 19):
            hit = top_hit(cb, vecs[i])
            assert hit is not None and hit["id"] == ids[i] and hit["score"] > 0.99
        got = cb.get(item_url(ids[7]))
        assert got.status_code == 200 and got.json()["metadata"] == {"n": 7}
        assert cb.delete(item_url(ids[7])).status_code == 200
        assert ca.get(item_url(ids[7])).status_code == 404
        hit = top_hit(ca, vecs[7])
        assert hit is not None and hit["id"] != ids[7]
        health = cb.get("/health").json()
        assert health["status"] == "ok" and health["index"]["type"] == "HNSW"
        assert health["index"]["params"]["collection"] == settings["store__milvus__collection"]


def _adder(
    client: httpx.Client, rng: np.random.Generator, stop: threading.Event, acked: dict
) -> None:
    """Adds batches of 5 until stopped; records only what the server acknowledged (201)."""
    for n in itertools.count():
        if stop.is_set():
            return
        ids = [f"crash/{n}/{j}" for j in range(5)]
        vecs = unit_vectors(rng, 5)
        try:
            resp = index_vectors(client, ids, vecs)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if resp.status_code == 201:
            acked.update(zip(ids, vecs, strict=True))
        else:
            assert resp.status_code == 503, resp.text
            assert "Retry-After" in resp.headers
            time.sleep(0.05)


def _check_acknowledged(client: httpx.Client, acked: dict) -> None:
    ids = list(acked)
    for item_id in ids:
        assert client.get(item_url(item_id)).status_code == 200, item_id
    for item_id in ids[:: max(1, len(ids) // 10)]:
        hit = top_hit(client, acked[item_id])
        assert hit is not None and hit["id"] == item_id


def test_sigkill_of_the_api_during_adds_loses_no_acknowledged_add(
    make_server: MakeServer, milvus_server: LocalMilvus
) -> None:
    api = make_server(**milvus_settings(milvus_server))
    api.start()
    acked: dict[str, np.ndarray] = {}
    stop = threading.Event()
    with api.client(timeout=10) as client:
        thread = threading.Thread(
            target=_adder, args=(client, np.random.default_rng(1), stop, acked)
        )
        thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        api.kill()
        stop.set()
        thread.join()
    assert len(acked) >= 50
    api.start()  # a fresh process: nothing of the old one's memory survives
    with api.client() as client:
        _check_acknowledged(client, acked)


def test_milvus_down_then_sigkilled_and_back(
    make_server: MakeServer, milvus_server: LocalMilvus
) -> None:
    """Milvus stops: ready says why, requests get 503 + Retry-After (never 500), and the API
    recovers by itself. Milvus is SIGKILLed during acknowledged adds: after its restart every
    acknowledged add is there (Milvus acks after writing its log)."""
    api = make_server(**milvus_settings(milvus_server))
    api.start()
    acked: dict[str, np.ndarray] = {}
    stop = threading.Event()
    with api.client(timeout=15) as client:
        thread = threading.Thread(
            target=_adder, args=(client, np.random.default_rng(2), stop, acked)
        )
        thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        milvus_server.kill()  # in the middle of acknowledged adds
        stop.set()
        thread.join()
        assert len(acked) >= 50

        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "Retry-After" in ready.headers
        assert "milvus" in ready.json()["detail"]
        health = client.get("/health")  # the truth, not an error
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and "milvus" in health.json()["detail"]
        one = unit_vectors(np.random.default_rng(3), 1)
        for call in (
            lambda: client.get(item_url(next(iter(acked)))),
            lambda: client.post("/search/vector", json={"vector": [0.1] * 32, "top_k": 3}),
            lambda: index_vectors(client, ["while-down"], one),
        ):
            resp = call()
            assert resp.status_code == 503, resp.text
            assert "Retry-After" in resp.headers

        # Restarting right after a SIGKILL can panic on leftover etcd sessions: retried.
        milvus_server.restart_after_crash()
        deadline = time.monotonic() + 120
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the API did not recover by itself"
            time.sleep(0.5)
        _check_acknowledged(client, acked)
        assert client.get(item_url("while-down")).status_code == 404


def test_a_collection_of_another_model_is_refused(
    make_server: MakeServer, milvus_server: LocalMilvus, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The collection records the model sha256: an API with another model refuses to start."""
    from app.artifacts import MODEL_FILE, save_model_meta
    from workbench.artifacts import tiny_model

    settings = milvus_settings(milvus_server)
    first = make_server(**settings)
    first.start()
    first.terminate()
    # The same tiny architecture with other weights: same dim, another sha256.
    other_model = tiny_model.write_tiny_model(tmp_path_factory.mktemp("other_model"))
    graph = other_model / MODEL_FILE
    tiny_model.build_tiny_onnx(graph, seed=1)
    save_model_meta(
        tiny_model.tiny_meta(graph, dim=32, name="tiny-other", description="other weights"),
        other_model,
    )
    second: ServerProcess = make_server(**settings)
    second.model_dir = other_model
    proc = second.spawn()
    assert proc.wait(timeout=90) != 0
    assert "model sha256" in second.log()


def test_api_started_while_milvus_is_unreachable_says_why(make_server: MakeServer) -> None:
    """No Milvus at the URI: the process starts (it cannot know when Milvus will come), is
    alive, not ready with the reason, and answers 503 + Retry-After instead of 500."""
    from workbench.servers.ports import free_port

    api = make_server(
        store__backend="milvus",
        store__milvus__uri=f"http://127.0.0.1:{free_port()}",
        store__milvus__timeout_s=1,
    )
    api.spawn()
    deadline = time.monotonic() + 90
    with api.client(timeout=10) as client:
        while True:
            assert api.proc is not None and api.proc.poll() is None, api.log()[-2000:]
            try:
                if client.get("/health/live").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, api.log()[-2000:]
            time.sleep(0.2)
        while client.get("/health/ready").json().get("detail", "").count("warming"):
            time.sleep(0.2)  # warm-up first, then the store's reason
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "Retry-After" in ready.headers
        assert "milvus" in ready.json()["detail"] and "unavailable" in ready.json()["detail"]
        resp = client.post("/search/vector", json={"vector": [0.1] * 32, "top_k": 3})
        assert resp.status_code == 503 and "Retry-After" in resp.headers
