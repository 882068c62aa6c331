"""Unknown, misspelt and repeated request fields (app/api/fields.py; JSON bodies through their
models' extra="forbid"): a 422 naming the field and the accepted ones, never a silent default."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app.api.conftest import PHOTOS, photo_bytes

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _jpeg(photo_names: list[str], i: int = 0) -> tuple[str, bytes, str]:
    return (photo_names[i], photo_bytes(photo_names[i]), "image/jpeg")


def _detail(resp: object) -> str:
    assert resp.status_code == 422, resp.text  # type: ignore[attr-defined]
    detail: str = resp.json()["detail"]  # type: ignore[attr-defined]
    return detail


def test_misspelt_form_field_names_it_and_the_accepted_ones(
    api_client: TestClient, photo_names: list[str]
) -> None:
    resp = api_client.post("/search", files={"file": _jpeg(photo_names)}, data={"topk": "1"})
    detail = _detail(resp)
    assert "unknown form field 'topk'" in detail
    accepted = detail.split("accepted: ", 1)[1].split(", ")
    assert {"file", "top_k", "rerank", "bbox", "filter"} <= set(accepted)
    assert resp.json()["errors"][0]["loc"] == ["body", "topk"]
    # The same request spelt right is answered with one result.
    ok = api_client.post("/search", files={"file": _jpeg(photo_names)}, data={"top_k": "1"})
    assert ok.status_code == 200, ok.text

    detail = _detail(
        api_client.post("/index", files=[("files", _jpeg(photo_names))], data={"id": "a"})
    )
    assert "unknown form field 'id'" in detail and "ids" in detail and "metadata" in detail


def test_second_file_on_search_is_refused(api_client: TestClient, photo_names: list[str]) -> None:
    files = [("file", _jpeg(photo_names, 0)), ("file", _jpeg(photo_names, 1))]
    detail = _detail(api_client.post("/search", files=files))
    assert "'file'" in detail and "sent 2 times" in detail
    # Fields that take one value per file may repeat.
    files = [("files", _jpeg(photo_names, 0)), ("files", _jpeg(photo_names, 1))]
    resp = api_client.post("/index", files=files, data={"ids": ["a", "b"]})
    assert resp.status_code == 201, resp.text
    # A repeated single-value field of /index is refused too.
    resp = api_client.post("/index", files=files, data={"keep_filenames": ["true", "false"]})
    assert "'keep_filenames'" in _detail(resp)


def test_wrong_upload_field_says_where_the_image_goes_and_what_was_unknown(
    api_client: TestClient, photo_names: list[str]
) -> None:
    detail = _detail(api_client.post("/search", files={"image": _jpeg(photo_names)}))
    assert "no field 'file'" in detail and "unknown form field 'image'" in detail


def test_unknown_json_keys_are_refused_on_every_json_route(api_client: TestClient) -> None:
    vec = np.ones(api_client.get("/health").json()["model"]["embedding_dim"]) / 8
    stored = {"items": [{"id": "v1", "vector": vec.tolist()}]}
    assert api_client.post("/index/vectors", json=stored).status_code == 201

    detail = _detail(api_client.post("/search/by-id", json={"id": "v1", "topk": 1}))
    assert "unknown field 'topk'" in detail
    assert "top_k" in detail.split("accepted: ", 1)[1] and "include_self" in detail
    detail = _detail(api_client.post("/search/vector", json={"vector": vec.tolist(), "k": 1}))
    assert "unknown field 'k'" in detail and "top_k" in detail
    body = {"items": [{"id": "v2", "vector": vec.tolist(), "meta": {"a": 1}}]}
    detail = _detail(api_client.post("/index/vectors", json=body))
    assert "unknown field 'items.0.meta'; accepted: id, vector, metadata" in detail
    detail = _detail(api_client.post("/index/vectors", json={**stored, "replace": True}))
    assert "unknown field 'replace'; accepted: items" in detail
    # Nothing of the refused requests was stored.
    assert api_client.get("/items").json()["total"] == 1


def test_unknown_query_parameter_is_refused(api_client: TestClient) -> None:
    detail = _detail(api_client.get("/items", params={"limt": 5}))
    assert detail == "unknown query parameter 'limt'; accepted: limit, cursor, id_prefix"
    assert api_client.get("/items", params={"limit": 5}).status_code == 200


def test_the_schema_documents_that_json_bodies_are_closed(api_client: TestClient) -> None:
    schemas = api_client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("ByIdSearchRequest", "VectorSearchRequest", "VectorIndexRequest", "VectorItem"):
        assert schemas[name]["additionalProperties"] is False, name
    assert json.dumps(schemas["VectorItem"]["properties"]["metadata"]).count("propertyNames")
