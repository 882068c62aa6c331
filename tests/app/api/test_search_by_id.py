"""POST /search/by-id ("more like this") and the search options every search route shares:
rerank_top_m only with SuperGlobal, filters validated before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import InferenceSettings, RerankSettings, Settings
from app.main import create_app
from tests.app.api.conftest import wait_ready


def _index_vectors(client: TestClient, n: int, seed: int = 0) -> np.ndarray:
    dim = client.get("/health").json()["model"]["embedding_dim"]
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = [
        {"id": f"v{i}", "vector": v.tolist(), "metadata": {"i": i}} for i, v in enumerate(vecs)
    ]
    resp = client.post("/index/vectors", json={"items": items})
    assert resp.status_code == 201, resp.text
    return vecs


def test_by_id_equals_vector_search_without_the_item(api_client: TestClient) -> None:
    vecs = _index_vectors(api_client, 30)
    by_id = api_client.post("/search/by-id", json={"id": "v4", "top_k": 5})
    assert by_id.status_code == 200, by_id.text
    ids = [r["id"] for r in by_id.json()["results"]]
    # Reference: brute force over the stored (fp16-rounded) vectors, v4 left out.
    stored = vecs.astype(np.float16).astype(np.float32)
    scores = stored @ stored[4]
    expected = [f"v{i}" for i in np.argsort(-scores) if i != 4][:5]
    assert ids == expected
    got_scores = [r["score"] for r in by_id.json()["results"]]
    want = [float(scores[int(i[1:])]) for i in expected]
    assert got_scores == pytest.approx(want, abs=2e-3)


def test_by_id_include_self_ranks_the_item_first(api_client: TestClient) -> None:
    _index_vectors(api_client, 12)
    body = api_client.post("/search/by-id", json={"id": "v7", "top_k": 3, "include_self": True})
    results = body.json()["results"]
    assert results[0]["id"] == "v7" and results[0]["score"] == pytest.approx(1.0, abs=1e-2)
    assert len(results) == 3


def test_by_id_returns_top_k_when_the_item_is_excluded(api_client: TestClient) -> None:
    _index_vectors(api_client, 6)
    results = api_client.post("/search/by-id", json={"id": "v0", "top_k": 5}).json()["results"]
    assert len(results) == 5 and "v0" not in [r["id"] for r in results]
    # Fewer items than top_k: everything else, still without the item.
    results = api_client.post("/search/by-id", json={"id": "v0", "top_k": 50}).json()["results"]
    assert sorted(r["id"] for r in results) == [f"v{i}" for i in range(1, 6)]


def test_by_id_with_superglobal_is_skipped_in_a_small_store(api_client: TestClient) -> None:
    _index_vectors(api_client, 20)
    body = api_client.post(
        "/search/by-id",
        json={"id": "v3", "top_k": 4, "rerank": "superglobal", "rerank_top_m": 10},
    ).json()
    # 20 items < rerank.min_store_items (100): plain cosine order, and the response says why.
    assert body["rerank"] == "none" and "20 items" in body["rerank_skipped"]
    assert len(body["results"]) == 4 and "v3" not in [r["id"] for r in body["results"]]


def test_by_id_with_superglobal(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        model_dir=tiny_model_dir,
        inference=InferenceSettings(intra_op_threads=1, decode_threads=2),
        rerank=RerankSettings(min_store_items=0),
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        _index_vectors(client, 20)
        body = client.post(
            "/search/by-id",
            json={"id": "v3", "top_k": 4, "rerank": "superglobal", "rerank_top_m": 10},
        ).json()
    assert body["rerank"] == "superglobal" and body.get("rerank_skipped") is None
    assert len(body["results"]) == 4 and "v3" not in [r["id"] for r in body["results"]]


def test_by_id_errors(api_client: TestClient) -> None:
    _index_vectors(api_client, 3)
    resp = api_client.post("/search/by-id", json={"id": "nope"})
    assert resp.status_code == 404 and "nope" in resp.json()["detail"]
    resp = api_client.post("/search/by-id", json={"top_k": 3})
    assert resp.status_code == 422 and "id" in resp.json()["detail"]
    resp = api_client.post("/search/by-id", json={"id": "v1", "top_k": 0})
    assert resp.status_code == 422 and "top_k" in resp.json()["detail"]
    resp = api_client.post("/search/by-id", json={"id": "v1", "filter": {"a b": 1}})
    assert resp.status_code == 422 and "filter key" in resp.json()["detail"]


def test_rerank_top_m_without_superglobal_is_rejected(api_client: TestClient) -> None:
    vecs = _index_vectors(api_client, 4)
    resp = api_client.post("/search/vector", json={"vector": vecs[0].tolist(), "rerank_top_m": 8})
    assert resp.status_code == 422
    assert "rerank_top_m applies only with rerank='superglobal'" in resp.json()["detail"]
    resp = api_client.post(
        "/search", files={"file": ("q.png", b"\x89PNG", "image/png")}, data={"rerank_top_m": "8"}
    )
    assert resp.status_code == 422 and "superglobal" in resp.json()["detail"]
    resp = api_client.post("/search/by-id", json={"id": "v0", "rerank_top_m": 8})
    assert resp.status_code == 422 and "superglobal" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "filter is not valid JSON"),
        ("[1, 2]", "filter must be"),
        ('{"year": {"gt": 3}}', '"in"'),
        ('{"a": [1]}', "type list"),
        ('{"a": {"in": []}}', "1 to"),
    ],
)
def test_image_search_filter_is_validated(api_client: TestClient, text: str, needle: str) -> None:
    resp = api_client.post(
        "/search", files={"file": ("q.png", b"\x89PNG", "image/png")}, data={"filter": text}
    )
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["detail"]
