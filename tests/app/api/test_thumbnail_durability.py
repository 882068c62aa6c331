"""An acknowledged add has its thumbnail and an acknowledged delete has removed it, even when the
server is SIGKILLed right after answering (the real process, `python -m app`, on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.api.conftest import PHOTOS, photo_bytes
from tests.reliability.clients import item_url
from tests.reliability.server import ServerProcess
from workbench.artifacts.tiny_model import write_tiny_model

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def test_thumbnails_survive_sigkill_and_deletes_stay_deleted(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model")
    (tmp_path / "logs").mkdir()
    server = ServerProcess(tmp_path / "data", model, tmp_path / "logs")
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:4]
    server.start()
    try:
        with server.client() as client:
            files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in names]
            resp = client.post("/index", files=files, data={"ids": json.dumps(names)})
            assert resp.status_code == 201, resp.text
            etags = {n: client.get(item_url(n) + "/thumbnail").headers["etag"] for n in names}
        server.kill()  # no shutdown code runs: no snapshot, no close

        server.start()
        with server.client() as client:
            for n in names:
                resp = client.get(item_url(n) + "/thumbnail")
                assert resp.status_code == 200, (n, resp.text)
                assert resp.headers["etag"] == etags[n]
            assert client.delete(item_url(names[1])).status_code == 200
        server.kill()

        server.start()
        with server.client() as client:
            assert client.get(item_url(names[1]) + "/thumbnail").status_code == 404
            assert client.get(item_url(names[0]) + "/thumbnail").status_code == 200
            listed = client.get("/items", params={"limit": 10}).json()
            assert listed["total"] == 3
            assert all(i["has_thumbnail"] for i in listed["items"])
    finally:
        server.kill()
