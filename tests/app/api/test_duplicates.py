"""GET /duplicates and the duplicate report of POST /index, with the service's default model
(EfficientNet-Lite0 + GeM, exported as `python -m workbench.export --default` does) on the
FAISS backend: real photos and edited copies of them (crop, resize, JPEG re-encode), groups
largest first, paging, adds and deletes reflected, writes the service did not see, 422 for bad
paging input; the same on the Milvus backend (a real Milvus server, tests marked `milvus`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import InferenceSettings, Settings, StoreSettings
from app.main import create_app
from tests.app.api.conftest import PHOTOS, make_client, photo_bytes, wait_ready
from tests.app.copies import edited_copy
from tests.app.index.backends import milvus_store_settings
from workbench.servers.milvus_server import LocalMilvus

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available"),
]

# Three photos with copies (3, 2 and 2 items per group), four unrelated photos without.
ASTRONAUT, COFFEE, CHINA = "skimage_astronaut.jpg", "skimage_coffee.jpg", "sklearn_china.jpg"
SINGLES = ["skimage_rocket.jpg", "imgaug_quokka.jpg", "mate_ladybird.jpg", "skimage_chelsea.jpg"]


@pytest.fixture(scope="module")
def default_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from workbench.export import run as export_main

    out = tmp_path_factory.mktemp("default") / "model"
    export_main(["--default", "--out", str(out)])
    return out


def _upload(client: TestClient, named: dict[str, bytes]) -> dict[str, list[dict]]:
    files = [("files", (name, data, "image/jpeg")) for name, data in named.items()]
    resp = client.post("/index", files=files, data={"ids": list(named)})
    assert resp.status_code == 201, resp.text
    return {f["id"]: f["duplicates"] for f in resp.json()["files"]}


def _copies() -> dict[str, bytes]:
    return {
        "copies/astronaut-small.jpg": edited_copy(photo_bytes(ASTRONAUT)),
        "copies/astronaut-q60.jpg": edited_copy(photo_bytes(ASTRONAUT), 0.95, 0.5, 60),
        "copies/coffee.jpg": edited_copy(photo_bytes(COFFEE)),
        "copies/china.jpg": edited_copy(photo_bytes(CHINA), 0.92, 0.6, 70),
    }


@pytest.fixture
def client(tmp_path: Path, default_model_dir: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, default_model_dir) as client:
        wait_ready(client, timeout=120)
        yield client


def _all_groups(client: TestClient, limit: int) -> list[list[str]]:
    groups, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        resp = client.get("/duplicates", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["groups"]) <= limit
        groups += [g["ids"] for g in body["groups"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return groups


def test_index_reports_copies_and_duplicates_groups_them(client: TestClient) -> None:
    originals = {n: photo_bytes(n) for n in [ASTRONAUT, COFFEE, CHINA, *SINGLES]}
    first = _upload(client, originals)
    assert all(d == [] for d in first.values()), first  # unrelated photos: nothing duplicated

    report = _upload(client, _copies())
    assert {d["id"] for d in report["copies/astronaut-small.jpg"]} >= {ASTRONAUT}
    assert {d["id"] for d in report["copies/coffee.jpg"]} == {COFFEE}
    assert {d["id"] for d in report["copies/china.jpg"]} == {CHINA}
    for dups in report.values():
        assert all(0 < d["score"] <= 1.0001 for d in dups)
        assert [d["score"] for d in dups] == sorted((d["score"] for d in dups), reverse=True)

    body = client.get("/duplicates").json()
    assert [g["size"] for g in body["groups"]] == [3, 2, 2]
    astronaut, coffee, china = (
        body["groups"][0],
        *sorted(body["groups"][1:], key=lambda g: g["representative"]),
    )
    # The original is the oldest item of its group: first, and the one to keep.
    assert astronaut["ids"][0] == astronaut["representative"] == ASTRONAUT
    assert set(astronaut["ids"]) == {
        ASTRONAUT,
        "copies/astronaut-small.jpg",
        "copies/astronaut-q60.jpg",
    }
    assert coffee["ids"] == [COFFEE, "copies/coffee.jpg"]
    assert china["ids"] == [CHINA, "copies/china.jpg"]
    assert body["total_groups"] == 3 and body["total_items"] == 7
    assert body["items_checked"] == 11 and body["next_cursor"] is None
    for g in body["groups"]:
        assert 0 < g["max_score"] <= 1.0001

    # Paged one group at a time: the same groups in the same order, each once.
    assert _all_groups(client, 1) == [g["ids"] for g in body["groups"]]
    assert _all_groups(client, 2) == [g["ids"] for g in body["groups"]]


def test_deletes_and_adds_after_the_first_scan_are_reflected(client: TestClient) -> None:
    _upload(client, {n: photo_bytes(n) for n in [ASTRONAUT, COFFEE, *SINGLES]})
    _upload(client, {"copies/astronaut-small.jpg": edited_copy(photo_bytes(ASTRONAUT))})
    assert _all_groups(client, 10) == [[ASTRONAUT, "copies/astronaut-small.jpg"]]

    # A new copy of the coffee after the scan: found by the next call.
    _upload(client, {"copies/coffee.jpg": edited_copy(photo_bytes(COFFEE))})
    groups = _all_groups(client, 10)
    assert sorted(groups) == [
        [ASTRONAUT, "copies/astronaut-small.jpg"],
        [COFFEE, "copies/coffee.jpg"],
    ]

    # Keep one, delete the other: the group is gone.
    assert client.delete("/items/copies/astronaut-small.jpg").status_code == 200
    assert _all_groups(client, 10) == [[COFFEE, "copies/coffee.jpg"]]
    # An id replaced by an unrelated picture leaves its group.
    _upload(client, {"copies/coffee.jpg": photo_bytes("lomiri_kleiber.jpg")})
    assert _all_groups(client, 10) == []
    assert client.get("/duplicates").json()["items_checked"] == 7


def test_writes_the_service_did_not_see_trigger_a_rescan(client: TestClient) -> None:
    _upload(client, {n: photo_bytes(n) for n in [CHINA, *SINGLES]})
    assert _all_groups(client, 10) == []
    # Another process writing to the same store (a bulk loader, a replica on one Milvus
    # collection) does not go through this service: simulated by adding to its store directly.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    copy = edited_copy(photo_bytes(CHINA), 0.92, 0.6, 70)
    vectors = client.portal.call(runtime.service.embed_images, [copy])  # type: ignore[union-attr]
    runtime.store.add(["elsewhere/china.jpg"], vectors)
    # The count differs: a rescan runs in the background, a later call has its result.
    deadline = time.monotonic() + 60
    while (groups := _all_groups(client, 10)) == [] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert groups == [[CHINA, "elsewhere/china.jpg"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"cursor": "not-a-cursor!"},
        {"cursor": "WzEsImEiXQ"},  # base64 of [1,"a"]: no group has one item
    ],
)
def test_bad_paging_input_is_a_422_that_says_why(client: TestClient, params: dict) -> None:
    resp = client.get("/duplicates", params=params)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert ("limit" in detail) if "limit" in params else ("next_cursor" in detail)


def test_an_empty_store_has_no_groups(client: TestClient) -> None:
    body = client.get("/duplicates").json()
    assert body["groups"] == [] and body["next_cursor"] is None and body["total_groups"] == 0


@pytest.mark.milvus
def test_groups_on_the_milvus_backend(
    tmp_path: Path, default_model_dir: Path, milvus_server: LocalMilvus
) -> None:
    """The same grouping through the Milvus store: its own neighbour search, paging, deletes."""
    settings = Settings(
        data_dir=tmp_path,
        model_dir=default_model_dir,
        inference=InferenceSettings(intra_op_threads=1, decode_threads=2),
        store=StoreSettings(
            backend="milvus",
            milvus=milvus_store_settings(milvus_server.uri, f"duplicates_{os.getpid()}"),
        ),
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout=120)
        _upload(client, {n: photo_bytes(n) for n in [ASTRONAUT, COFFEE, CHINA, *SINGLES]})
        report = _upload(client, _copies())
        assert {d["id"] for d in report["copies/coffee.jpg"]} == {COFFEE}
        groups = _all_groups(client, 1)
        assert [len(g) for g in groups] == [3, 2, 2]
        assert groups[0][0] == ASTRONAUT
        assert sorted(groups[1:]) == [[COFFEE, "copies/coffee.jpg"], [CHINA, "copies/china.jpg"]]
        assert client.delete("/items/copies/coffee.jpg").status_code == 200
        assert client.delete("/items/copies/astronaut-q60.jpg").status_code == 200
        groups = _all_groups(client, 10)
        assert sorted(groups) == sorted(
            [[ASTRONAUT, "copies/astronaut-small.jpg"], [CHINA, "copies/china.jpg"]]
        )


def test_check_duplicates_false_skips_the_report_and_stores_the_same(
    client: TestClient,
) -> None:
    """A bulk load that does not read the report opts out: `duplicates` is null (not
    checked), the items are stored all the same, and GET /duplicates still finds the copy."""
    _upload(client, {COFFEE: photo_bytes(COFFEE)})
    copy = edited_copy(photo_bytes(COFFEE))
    files = [("files", ("coffee-copy.jpg", copy, "image/jpeg"))]
    resp = client.post(
        "/index", files=files, data={"ids": ["copies/coffee.jpg"], "check_duplicates": "false"}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["files"][0]["duplicates"] is None
    assert "duplicates" not in body["timings_ms"]
    groups = client.get("/duplicates").json()["groups"]
    assert [g["ids"] for g in groups] == [[COFFEE, "copies/coffee.jpg"]]
    bad = client.post("/index", files=files, data={"check_duplicates": "maybe"})
    assert bad.status_code == 422 and "check_duplicates" in bad.text
