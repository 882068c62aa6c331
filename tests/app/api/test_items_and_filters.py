"""Browsing (GET /items with cursors), thumbnails (GET /items/{id}/thumbnail with ETags) and
metadata filters through the API, each against a reference computed here."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.index.filters import parse_filter
from tests.app.api.conftest import PHOTOS, photo_bytes
from tests.reliability.clients import item_url

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _dim(client: TestClient) -> int:
    return int(client.get("/health").json()["model"]["embedding_dim"])


def _add_vectors(client: TestClient, ids: list[str], vecs: np.ndarray, metas: list) -> None:
    items = [
        {"id": i, "vector": v.tolist(), "metadata": m}
        for i, v, m in zip(ids, vecs, metas, strict=True)
    ]
    resp = client.post("/index/vectors", json={"items": items})
    assert resp.status_code == 201, resp.text


def _page_all(client: TestClient, limit: int, prefix: str | None = None) -> list[dict]:
    out, cursor = [], None
    while True:
        params: dict = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if prefix:
            params["id_prefix"] = prefix
        resp = client.get("/items", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


# ---------------------------------------------------------------------------- browsing
def test_listing_pages_in_id_order_with_total_and_prefix(api_client: TestClient) -> None:
    dim = _dim(api_client)
    rng = np.random.default_rng(1)
    ids = [f"a/{i:03d}" for i in range(23)] + [f"b/{i}" for i in range(5)]
    vecs = rng.standard_normal((len(ids), dim)).astype(np.float32)
    _add_vectors(api_client, ids, vecs, [{"n": i} for i in range(len(ids))])
    first = api_client.get("/items", params={"limit": 10}).json()
    assert first["total"] == 28 and len(first["items"]) == 10
    assert [i["id"] for i in first["items"]] == sorted(ids)[:10]
    assert first["items"][0]["has_thumbnail"] is False
    assert [i["id"] for i in _page_all(api_client, 10)] == sorted(ids)
    assert [i["id"] for i in _page_all(api_client, 4, "b/")] == sorted(ids[23:])
    body = api_client.get("/items", params={"limit": 2, "id_prefix": "b/"}).json()
    assert body["total"] == 5
    assert api_client.get("/items", params={"limit": 5, "id_prefix": "zzz"}).json() == {
        "items": [],
        "next_cursor": None,
        "total": 0,
    }


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "%%%not-a-cursor"}, "cursor"),
    ],
)
def test_listing_rejects_bad_parameters(api_client: TestClient, params: dict, needle: str) -> None:
    resp = api_client.get("/items", params=params)
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["detail"]


def test_listing_is_stable_under_concurrent_adds_and_deletes(api_client: TestClient) -> None:
    """Items that exist throughout the paging come back exactly once, in order; nothing comes
    back twice, whatever is added or deleted meanwhile."""
    dim = _dim(api_client)
    rng = np.random.default_rng(2)
    stable = [f"s{i:03d}" for i in range(60)]
    doomed = [f"d{i:03d}" for i in range(30)]
    _add_vectors(
        api_client,
        stable + doomed,
        rng.standard_normal((90, dim)).astype(np.float32),
        [None] * 90,
    )
    stop = threading.Event()
    errors: list[str] = []

    def churn() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            # New ids land before, between and after the stable ones.
            new = [f"{p}{n:03d}x" for p in ("a", "s", "z")]
            vecs = rng.standard_normal((3, dim)).astype(np.float32)
            resp = api_client.post(
                "/index/vectors",
                json={
                    "items": [
                        {"id": i, "vector": v.tolist()} for i, v in zip(new, vecs, strict=True)
                    ]
                },
            )
            if resp.status_code != 201:
                errors.append(resp.text)
            if n < len(doomed):
                api_client.delete(item_url(doomed[n]))
            n += 1

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        seen = [i["id"] for i in _page_all(api_client, 7)]
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert len(seen) == len(set(seen)), "an id came back twice"
    assert seen == sorted(seen)
    assert set(stable) <= set(seen)


# ---------------------------------------------------------------------------- thumbnails
def test_thumbnails_are_kept_cached_by_etag_and_removed_on_delete(
    api_client: TestClient, photo_names: list[str]
) -> None:
    name = photo_names[0]
    resp = api_client.post(
        "/index",
        files=[("files", (name, photo_bytes(name), "image/jpeg"))],
        data={"ids": name},
    )
    assert resp.status_code == 201, resp.text
    assert api_client.get(item_url(name)).json()["has_thumbnail"] is True
    thumb = api_client.get(item_url(name) + "/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(thumb.content))
    with Image.open(io.BytesIO(photo_bytes(name))) as original:
        ratio = original.size[0] / original.size[1]
    assert max(img.size) == 256 and img.size[0] / img.size[1] == pytest.approx(ratio, rel=0.02)
    etag = thumb.headers["etag"]
    again = api_client.get(item_url(name) + "/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag

    # Re-adding the id with another image replaces the thumbnail (a new ETag).
    other = photo_names[1]
    api_client.post(
        "/index",
        files=[("files", (other, photo_bytes(other), "image/jpeg"))],
        data={"ids": name},
    )
    changed = api_client.get(item_url(name) + "/thumbnail", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag

    assert api_client.delete(item_url(name)).status_code == 200
    gone = api_client.get(item_url(name) + "/thumbnail")
    assert gone.status_code == 404 and "no item" in gone.json()["detail"]


def test_vector_items_have_no_thumbnail(api_client: TestClient) -> None:
    dim = _dim(api_client)
    _add_vectors(api_client, ["vec/1"], np.ones((1, dim), np.float32), [None])
    resp = api_client.get(item_url("vec/1") + "/thumbnail")
    assert resp.status_code == 404
    assert "no thumbnail" in resp.json()["detail"] and "vector" in resp.json()["detail"]


# ---------------------------------------------------------------------------- filters
def _filtered_reference(
    query: np.ndarray, stored: np.ndarray, metas: list, filt: dict, k: int, skip: str | None
) -> list[str]:
    condition = parse_filter(filt)
    assert condition is not None
    scores = stored @ query
    order = np.argsort(-scores, kind="stable")
    out = [f"v{i}" for i in order if condition.matches(metas[i]) and f"v{i}" != skip]
    return out[:k]


def test_filtered_search_equals_brute_force(api_client: TestClient) -> None:
    dim = _dim(api_client)
    rng = np.random.default_rng(3)
    n = 200
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    albums = ["trip", "home", "work"]
    metas: list = []
    for i in range(n):
        if i % 17 == 0:
            metas.append(None)
            continue
        meta = {"album": albums[i % 3], "year": 2020 + i % 6, "fav": i % 4 == 0}
        if i % 11 == 0:
            del meta["year"]
        metas.append(meta)
    ids = [f"v{i}" for i in range(n)]
    _add_vectors(api_client, ids, vecs, metas)
    stored = vecs.astype(np.float16).astype(np.float32)
    filters = [
        {"album": "trip"},
        {"album": "home", "year": {"in": [2021, 2024]}},
        {"fav": True},
        {"year": 2023.0},
        {"album": {"in": ["work", "nowhere"]}, "fav": False},
        {"album": "nowhere"},
    ]
    for filt in filters:
        for q in (5, 77):
            body = api_client.post(
                "/search/vector", json={"vector": vecs[q].tolist(), "top_k": 10, "filter": filt}
            ).json()
            got = [r["id"] for r in body["results"]]
            assert got == _filtered_reference(vecs[q], stored, metas, filt, 10, None), filt
            condition = parse_filter(filt)
            assert condition is not None
            assert all(condition.matches(r["metadata"]) for r in body["results"])
            by_id = api_client.post(
                "/search/by-id", json={"id": f"v{q}", "top_k": 10, "filter": filt}
            ).json()
            got = [r["id"] for r in by_id["results"]]
            expected = _filtered_reference(stored[q], stored, metas, filt, 10, f"v{q}")
            assert got == expected, filt


def test_image_search_with_filter(api_client: TestClient, photo_names: list[str]) -> None:
    names = photo_names[:6]
    files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in names]
    metas = [{"album": "a" if i < 3 else "b"} for i in range(6)]
    resp = api_client.post(
        "/index", files=files, data={"ids": json.dumps(names), "metadata": json.dumps(metas)}
    )
    assert resp.status_code == 201, resp.text
    resp = api_client.post(
        "/search",
        files={"file": ("q.jpg", photo_bytes(names[0]), "image/jpeg")},
        data={"top_k": "6", "filter": '{"album": "b"}'},
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    # top_k matching results, not a post-filtered subset of the unfiltered top_k.
    assert sorted(r["id"] for r in results) == sorted(names[3:])
    assert all(r["metadata"]["album"] == "b" for r in results)
