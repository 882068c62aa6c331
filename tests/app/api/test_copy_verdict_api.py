"""The copy verdict through the HTTP API (a real tiny ONNX model, real photos, a real store):
`match` on every result of every search route, `score` is the cosine re-ranked or not (so
`score_threshold` filters on the score shown), re-ranking never changes a verdict, tiny images
are never a match, and /health says how the verdict is made."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from app.config import InferenceSettings, RerankSettings, Settings
from app.main import create_app
from app.search.verdict import default_rule
from tests.app.api.conftest import PHOTOS, photo_bytes, wait_ready

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


@pytest.fixture
def client(tmp_path: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    # SuperGlobal runs from 10 stored items on (default 100), so re-ranking is exercised.
    settings = Settings(
        data_dir=tmp_path,
        model_dir=tiny_model_dir,
        inference=InferenceSettings(intra_op_threads=1, decode_threads=2),
        rerank=RerankSettings(min_store_items=10),
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def _index_photos(client: TestClient, names: list[str]) -> None:
    files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in names]
    resp = client.post("/index", files=files, data={"ids": json.dumps(names)})
    assert resp.status_code == 201, resp.text


def _search(client: TestClient, data: bytes, **form: object) -> dict[str, Any]:
    resp = client.post(
        "/search",
        files={"file": ("q.jpg", data, "image/jpeg")},
        data={k: str(v) for k, v in form.items()},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_every_route_returns_match_and_cosine_scores(
    client: TestClient, photo_names: list[str]
) -> None:
    names = photo_names[:12]
    _index_photos(client, names)
    rule = default_rule()
    # The stored photo itself: cosine ~1, a match; and a half crop of it verified by geometry.
    res = _search(client, photo_bytes(names[3]), top_k=5)
    assert res["results"][0]["id"] == names[3] and res["results"][0]["match"] is True
    assert all(isinstance(r["match"], bool) and r["rerank_score"] is None for r in res["results"])
    assert "verify" in res["timings_ms"]
    with Image.open(PHOTOS / names[3]) as im:
        crop = ImageOps.grayscale(im.crop((0, 0, im.width // 2, im.height // 2)))
    res = _search(client, _jpeg(crop), top_k=12)
    matched = [r["id"] for r in res["results"] if r["match"]]
    assert names[3] in matched
    # By id: the item's thumbnail is its picture; an identical re-upload under another id
    # is a copy.
    resp = client.post(
        "/index",
        files=[("files", ("dup.jpg", photo_bytes(names[5]), "image/jpeg"))],
        data={"ids": '["dup"]'},
    )
    assert resp.status_code == 201
    res = client.post("/search/by-id", json={"id": "dup", "top_k": 5}).json()
    assert res["results"][0]["id"] == names[5] and res["results"][0]["match"] is True
    # Vector search: no image, the cosine alone decides.
    vec = client.get(f"/items/{names[7]}", params={"include_vector": True}).json()["vector"]
    res = client.post("/search/vector", json={"vector": vec, "top_k": 8}).json()
    assert res["results"][0]["id"] == names[7]
    for r in res["results"]:
        assert r["match"] is (r["score"] >= rule.cosine_alone)


def test_rerank_changes_the_order_never_a_score_or_a_verdict(
    client: TestClient, photo_names: list[str]
) -> None:
    _index_photos(client, photo_names[:14])
    query = photo_bytes(photo_names[2])
    plain = _search(client, query, top_k=14)
    assert plain["rerank"] == "none"
    threshold = sorted(r["score"] for r in plain["results"])[4]
    reranked = _search(
        client, query, top_k=14, rerank="superglobal", rerank_top_m=14, score_threshold=threshold
    )
    assert reranked["rerank"] == "superglobal", reranked["rerank_skipped"]
    by_id = {r["id"]: r for r in plain["results"]}
    assert len(reranked["results"]) == sum(r["score"] >= threshold for r in plain["results"])
    for r in reranked["results"]:
        assert r["score"] >= threshold  # the threshold applies to the score shown
        assert r["score"] == pytest.approx(by_id[r["id"]]["score"], abs=1e-6)
        assert r["match"] == by_id[r["id"]]["match"]
        assert isinstance(r["rerank_score"], float)
    # The order follows the re-rank score.
    scores = [r["rerank_score"] for r in reranked["results"]]
    assert scores == sorted(scores, reverse=True)


def test_tiny_images_are_never_a_match(client: TestClient, photo_names: list[str]) -> None:
    _index_photos(client, photo_names[:4])
    tiny = Image.fromarray(np.full((12, 12, 3), 90, np.uint8))
    blob = _jpeg(tiny)
    resp = client.post(
        "/index", files=[("files", ("t.jpg", blob, "image/jpeg"))], data={"ids": '["tiny"]'}
    )
    assert resp.status_code == 201
    res = _search(client, blob, top_k=5)
    # The same 12 px image comes back first at cosine ~1, and is still not called a copy.
    assert res["results"][0]["id"] == "tiny" and res["results"][0]["score"] > 0.99
    assert not any(r["match"] for r in res["results"])
    res = client.post("/search/by-id", json={"id": "tiny", "top_k": 5, "include_self": True}).json()
    assert not any(r["match"] for r in res["results"])


def test_health_says_how_the_verdict_is_made(client: TestClient) -> None:
    verdict = client.get("/health").json()["verdict"]
    rule = default_rule()
    assert verdict["rule"] == rule.as_dict()
    assert "RANSAC" in verdict["method"] and str(rule.cosine_alone) in verdict["method"]
    measured = verdict["measured"]
    assert measured["image_search"]["plain"]["never_stored_match_rate"] <= 0.05
    assert "-m workbench.evaluation.copy_verdict" in measured["command"]
