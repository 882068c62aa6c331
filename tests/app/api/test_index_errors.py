"""What POST /index says when a batch fails: the file by its name, and that nothing of the
request was stored (a batch is all-or-nothing). Metadata keys must be ones a filter can name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.uploads import file_labels
from tests.app.api.conftest import PHOTOS, photo_bytes

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _files(photo_names: list[str], broken_at: int, n: int = 3) -> list[tuple[str, tuple]]:
    files = []
    for i in range(n):
        if i == broken_at:
            files.append(("files", ("broken.jpg", b"\xff\xd8 not a jpeg", "image/jpeg")))
        else:
            name = photo_names[i]
            files.append(("files", (name, photo_bytes(name), "image/jpeg")))
    return files


def test_a_bad_file_is_named_and_nothing_is_stored(
    api_client: TestClient, photo_names: list[str]
) -> None:
    resp = api_client.post("/index", files=_files(photo_names, broken_at=1))
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("'broken.jpg' (file 2 of 3): "), detail
    assert "image 1" not in detail
    assert "nothing from this request was stored" in detail and "all of its files or none" in detail
    assert api_client.get("/items").json()["total"] == 0

    # Alone, the file is named without a position.
    resp = api_client.post("/index", files=[_files(photo_names, broken_at=0, n=1)[0]])
    assert resp.json()["detail"].startswith("'broken.jpg': ")

    # The same files without the broken one are stored.
    good = [f for f in _files(photo_names, broken_at=1) if f[1][0] != "broken.jpg"]
    assert api_client.post("/index", files=good).status_code == 201
    assert api_client.get("/items").json()["total"] == 2


def test_unsupported_type_and_bad_metadata_name_the_file(
    api_client: TestClient, photo_names: list[str]
) -> None:
    files = _files(photo_names, broken_at=-1, n=2)
    files[1] = ("files", ("notes.txt", b"hello", "text/plain"))
    resp = api_client.post("/index", files=files)
    assert resp.status_code == 415
    assert resp.json()["detail"].startswith("'notes.txt' (file 2 of 2): content type")

    files = _files(photo_names, broken_at=-1, n=2)
    resp = api_client.post("/index", files=files, data={"metadata": json.dumps([{}, "{nope"])})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert f"metadata[1] (for '{photo_names[1]}' (file 2 of 2))" in detail
    assert "nothing from this request was stored" in detail


def test_metadata_keys_no_filter_can_name_are_refused(
    api_client: TestClient, photo_names: list[str]
) -> None:
    files = [("files", (photo_names[0], photo_bytes(photo_names[0]), "image/jpeg"))]
    resp = api_client.post("/index", files=files, data={"metadata": json.dumps({"bad key!": 1})})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert "key 'bad key!' is not accepted" in detail and "[A-Za-z0-9_-]{1,64}" in detail

    dim = api_client.get("/health").json()["model"]["embedding_dim"]
    vec = (np.ones(dim) / np.sqrt(dim)).tolist()
    for key in ("bad key!", "", "x" * 65, "a.b"):
        body = {"items": [{"id": "v", "vector": vec, "metadata": {key: 1}}]}
        resp = api_client.post("/index/vectors", json=body)
        assert resp.status_code == 422 and "items[0].metadata" in resp.json()["detail"], key
    assert api_client.get("/items").json()["total"] == 0

    # Every accepted key is one a filter can use: store, then find it by that key.
    body = {"items": [{"id": "v", "vector": vec, "metadata": {"Album_2024-x": "trip"}}]}
    assert api_client.post("/index/vectors", json=body).status_code == 201
    found = api_client.post(
        "/search/vector", json={"vector": vec, "filter": {"Album_2024-x": "trip"}}
    ).json()["results"]
    assert [h["id"] for h in found] == ["v"]


def test_file_labels() -> None:
    assert file_labels(["a.jpg"]) == ["'a.jpg'"]
    assert file_labels([None]) == ["the file"]
    assert file_labels(["a.jpg", None]) == ["'a.jpg' (file 1 of 2)", "file 2 of 2"]
