"""The HTTP API end to end with a real (tiny) ONNX model, real photos and a real store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.api.conftest import PHOTOS, make_client, photo_bytes, wait_ready

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _index(client: TestClient, names: list[str], **form: str) -> dict:
    files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in names]
    data = {"ids": json.dumps(names), "metadata": json.dumps([{"name": n} for n in names])}
    data.update(form)
    resp = client.post("/index", files=files, data=data)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _search(client: TestClient, data: bytes, **form: object) -> dict:
    resp = client.post(
        "/search",
        files={"file": ("q.jpg", data, "image/jpeg")},
        data={k: str(v) for k, v in form.items()},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_health_reports_model_providers_and_index(api_client: TestClient) -> None:
    body = api_client.get("/health").json()
    assert body["status"] == "ok" and body["ready"] is True
    assert body["model"]["providers"][-1] == "CPUExecutionProvider"
    assert body["index"]["type"] == "flat" and body["index"]["ntotal"] == 0
    assert api_client.get("/health/live").json() == {"status": "alive"}
    assert api_client.get("/health/ready").status_code == 200


def test_index_get_search_delete_readd(api_client: TestClient, photo_names: list[str]) -> None:
    names = photo_names[:6]
    out = _index(api_client, names)
    assert out["ids"] == names and out["count"] == 6
    item = api_client.get(f"/items/{names[0]}").json()
    # The upload's file name is kept beside the client's metadata.
    assert item["metadata"] == {"name": names[0], "filename": names[0]}
    assert item["vector"] is None
    vec = api_client.get(f"/items/{names[0]}", params={"include_vector": True}).json()["vector"]
    assert abs(np.linalg.norm(vec) - 1) < 1e-2

    res = _search(api_client, photo_bytes(names[2]), top_k=3)
    assert res["results"][0]["id"] == names[2]
    assert res["results"][0]["score"] == pytest.approx(1.0, abs=1e-2)
    assert res["results"][0]["metadata"] == {"name": names[2], "filename": names[2]}
    assert {"embed", "ann_rescore", "total"} <= set(res["timings_ms"])
    assert res["rerank"] == "none"

    assert api_client.delete(f"/items/{names[2]}").json() == {"id": names[2], "deleted": True}
    assert api_client.get(f"/items/{names[2]}").status_code == 404
    assert api_client.delete(f"/items/{names[2]}").status_code == 404
    res = _search(api_client, photo_bytes(names[2]), top_k=6)
    assert names[2] not in [r["id"] for r in res["results"]]

    # Re-adding an id replaces it: still one item, new metadata.
    assert _index(api_client, [names[2]])["replaced"] == []
    again = _index(api_client, [names[2]], metadata=json.dumps([{"v": 2, "filename": "x.jpg"}]))
    assert again["replaced"] == [names[2]]
    assert [(f["filename"], f["id"]) for f in again["files"]] == [(names[2], names[2])]
    assert api_client.get("/health").json()["index"]["ntotal"] == 6
    # A client's own filename wins over the upload's.
    assert api_client.get(f"/items/{names[2]}").json()["metadata"] == {"v": 2, "filename": "x.jpg"}


def test_default_ids_are_content_hashes(api_client: TestClient, photo_names: list[str]) -> None:
    data = photo_bytes(photo_names[0])
    resp = api_client.post("/index", files=[("files", ("a.jpg", data, "image/jpeg"))])
    assert resp.status_code == 201
    import hashlib

    assert resp.json()["ids"] == [hashlib.sha256(data).hexdigest()]


def test_restart_keeps_everything(
    tmp_path: Path, tiny_model_dir: Path, photo_names: list[str]
) -> None:
    names = photo_names[:5]
    with make_client(tmp_path, tiny_model_dir) as client:
        wait_ready(client)
        _index(client, names)
        api_deleted = names[0]
        assert client.delete(f"/items/{api_deleted}").status_code == 200
        before = _search(client, photo_bytes(names[3]), top_k=4)["results"]
    with make_client(tmp_path, tiny_model_dir) as client:
        wait_ready(client)
        assert client.get("/health").json()["index"]["ntotal"] == 4
        assert client.get(f"/items/{api_deleted}").status_code == 404
        after = _search(client, photo_bytes(names[3]), top_k=4)["results"]
    assert [r["id"] for r in after] == [r["id"] for r in before]


def test_bbox_crop_and_superglobal(api_client: TestClient, photo_names: list[str]) -> None:
    names = photo_names[:8]
    _index(api_client, names)
    img = Image.open(io.BytesIO(photo_bytes(names[1])))
    w, h = img.size
    res = _search(api_client, photo_bytes(names[1]), top_k=5, bbox=f"0,0,{w * 0.9},{h * 0.9}")
    assert res["results"][0]["id"] == names[1]
    res = _search(api_client, photo_bytes(names[1]), top_k=5, rerank="superglobal", rerank_top_m=8)
    # 8 items < rerank.min_store_items (100): skipped, and the response says why.
    assert res["rerank"] == "none" and "rerank" not in res["timings_ms"]
    assert "store holds 8 items" in res["rerank_skipped"]
    assert len(res["results"]) == 5
    assert res["results"][0]["id"] == names[1]


def test_vector_endpoints_and_score_threshold(api_client: TestClient) -> None:
    dim = api_client.get("/health").json()["model"]["embedding_dim"]
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((20, dim)).astype(np.float32)
    items = [
        {"id": f"v{i}", "vector": v.tolist(), "metadata": {"i": i}} for i, v in enumerate(vecs)
    ]
    resp = api_client.post("/index/vectors", json={"items": items})
    assert resp.status_code == 201 and resp.json()["count"] == 20
    res = api_client.post("/search/vector", json={"vector": vecs[7].tolist(), "top_k": 3}).json()
    assert res["results"][0]["id"] == "v7" and res["results"][0]["metadata"] == {"i": 7}
    res = api_client.post(
        "/search/vector", json={"vector": vecs[7].tolist(), "top_k": 20, "score_threshold": 0.99}
    ).json()
    assert [r["id"] for r in res["results"]] == ["v7"]


def test_metrics_exposed(api_client: TestClient) -> None:
    api_client.get("/health")
    text = api_client.get("/metrics").text
    assert "simsearch_http_requests_total" in text
    assert 'route="/health"' in text
    assert "simsearch_index_ntotal" in text


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"files": {"file": ("x.jpg", b"\x00garbage" * 10, "image/jpeg")}}, 400, ""),
        ({"files": {"file": ("x.txt", b"hello", "text/plain")}}, 415, "content type"),
        ({"files": {"file": ("x.jpg", b"", "image/jpeg")}}, 422, "empty"),
        ({"data": {"top_k": "0"}}, 422, "top_k"),
        ({"data": {"top_k": "100000"}}, 422, "top_k"),
        ({"data": {"top_k": "ten"}}, 422, "top_k"),
        ({"data": {"bbox": "1,2,3"}}, 422, "bbox"),
        ({"data": {"bbox": "50,50,10,10"}}, 422, "bbox"),
        ({"data": {"rerank": "magic"}}, 422, "rerank"),
        ({"data": {"nprobe": "-1"}}, 422, "nprobe"),
        ({"data": {"score_threshold": "nan"}}, 422, "score_threshold"),
    ],
)
def test_search_rejects_bad_input(
    api_client: TestClient, photo_names: list[str], kwargs: dict, status: int, needle: str
) -> None:
    files = kwargs.get("files") or {"file": ("q.jpg", photo_bytes(photo_names[0]), "image/jpeg")}
    resp = api_client.post("/search", files=files, data=kwargs.get("data", {}))
    assert resp.status_code == status, resp.text
    assert needle in json.dumps(resp.json()["detail"])
    assert api_client.get("/health/ready").status_code == 200


def test_index_rejects_bad_input(api_client: TestClient, photo_names: list[str]) -> None:
    good = ("files", ("a.jpg", photo_bytes(photo_names[0]), "image/jpeg"))
    cases = [
        ({"ids": json.dumps(["a", "b"])}, 422, "ids"),
        ({"ids": json.dumps([""])}, 422, "id"),
        ({"ids": json.dumps(["x" * 10_000])}, 422, "id"),
        ({"metadata": "not json"}, 422, "metadata"),
        ({"metadata": json.dumps([[1, 2]])}, 422, "metadata"),
        ({"metadata": json.dumps([{"k": "v" * 100_000}])}, 422, "metadata"),
    ]
    for data, status, needle in cases:
        resp = api_client.post("/index", files=[good], data=data)
        assert resp.status_code == status, (data, resp.text)
        assert needle in json.dumps(resp.json()["detail"])
    dim = api_client.get("/health").json()["model"]["embedding_dim"]
    bad_vectors = [
        {"items": [{"id": "a", "vector": [1.0] * (dim + 1)}]},
        {"items": [{"id": "a", "vector": [float("nan")] + [1.0] * (dim - 1)}]},
        {"items": [{"id": "a", "vector": [0.0] * dim}]},
        {"items": []},
        {"items": [{"id": "a", "vector": [1.0] * dim}, {"id": "a", "vector": [1.0] * dim}]},
    ]
    for body in bad_vectors:
        resp = api_client.post(
            "/index/vectors",
            content=json.dumps(body, allow_nan=True),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 422, (body["items"][:1], resp.text)
    assert api_client.get("/health").json()["index"]["ntotal"] == 0


def test_upload_over_limit_is_413(
    tmp_path: Path, tiny_model_dir: Path, photo_names: list[str]
) -> None:
    with make_client(tmp_path, tiny_model_dir, max_upload_bytes=4096) as client:
        wait_ready(client)
        resp = client.post(
            "/search", files={"file": ("q.jpg", photo_bytes(photo_names[0]), "image/jpeg")}
        )
        assert resp.status_code == 413 and "limit" in resp.json()["detail"]


def test_switch_to_ivfpq_keeps_top_hits(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Exact search while small; IVF-PQ trained in the background past a test-sized threshold;
    stored vectors find themselves before and after the swap, and near queries agree with a
    brute-force reference after it."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    labels = rng.integers(0, 40, 3000)
    vecs = centres[labels] + 0.35 * rng.standard_normal((3000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    own = vecs[:1500:75]  # 20 stored vectors
    near = vecs[1:3000:60] + 0.02 * rng.standard_normal((50, 32)).astype(np.float32)

    def top1(client: TestClient, queries: np.ndarray) -> list[str]:
        out = []
        for q in queries:
            body = {"vector": q.tolist(), "top_k": 1}
            out.append(client.post("/search/vector", json=body).json()["results"][0]["id"])
        return out

    def add(client: TestClient, lo: int, hi: int) -> None:
        for s in range(lo, hi, 500):
            rows = range(s, min(hi, s + 500))
            items = [{"id": f"v{i}", "vector": vecs[i].tolist()} for i in rows]
            assert client.post("/index/vectors", json={"items": items}).status_code == 201

    # Test-sized PQ (4 sub-quantizers of 5 bits on 32-d) is very coarse: re-score more candidates.
    with make_client(tmp_path, tiny_model_dir, ivf_min_vectors=2000, min_candidates=300) as client:
        wait_ready(client)
        add(client, 0, 1500)
        assert client.get("/health").json()["index"]["type"] == "flat"
        before = top1(client, own)
        add(client, 1500, 3000)
        assert client.app.state.runtime.store.wait_for_training(timeout=120)
        index = client.get("/health").json()["index"]
        assert index["type"] == "ivfpq" and index["ntotal"] == 3000
        after = top1(client, own)
        near_hits = top1(client, near)
    assert before == after == [f"v{i}" for i in range(0, 1500, 75)]
    stored = vecs.astype(np.float16).astype(np.float32)
    qn = near / np.linalg.norm(near, axis=1, keepdims=True)
    reference = [f"v{i}" for i in np.argmax(qn @ stored.T, axis=1)]
    agree = np.mean([a == b for a, b in zip(near_hits, reference, strict=True)])
    assert agree >= 0.9, agree
