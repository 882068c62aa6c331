"""The decode path through HTTP: bbox in the upload's pixels, one decode per indexed file
(descriptor and thumbnail), the pixel limit's 413."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import InferenceSettings, LimitSettings, Settings
from app.inference import working
from app.main import create_app
from tests.app.api.conftest import wait_ready


def _encode(width: int, height: int, fmt: str) -> bytes:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2] = x, y, (x + y) / 2
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(params=["official", "fast"])
def client(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path
) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        model_dir=tiny_model_dir,
        inference=InferenceSettings(
            intra_op_threads=1, decode_threads=2, pixel_chain=request.param
        ),
        limits=LimitSettings(max_pixels=2_000_000),
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def _search(client: TestClient, data: bytes, bbox: str | None = None) -> tuple[int, dict]:
    fields = {"top_k": "3", **({"bbox": bbox} if bbox else {})}
    r = client.post("/search", files={"file": ("q.img", data, "image/jpeg")}, data=fields)
    return r.status_code, r.json()


def test_bbox_is_checked_in_the_uploads_own_pixels(client: TestClient) -> None:
    data = _encode(1200, 400, "JPEG")  # the tiny model caps at 1024: worked on at 1024x341
    assert _search(client, data, "0,0,1200,400")[0] == 200
    assert _search(client, data, "600,0,1200,400")[0] == 200
    for bbox in ("0,0,1201,400", "0,0,1300,400", "0,0,1200,401"):
        status, body = _search(client, data, bbox)
        assert status == 422, (bbox, body)
        assert "outside the 1200x400 image" in body["detail"]


def test_thin_upload_is_named_in_its_own_pixels(client: TestClient) -> None:
    status, body = _search(client, _encode(20000, 50, "PNG"))
    assert status == 400 and "20000x50 pixels" in body["detail"], body


def test_one_decode_per_indexed_file_serves_descriptor_and_thumbnail(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[int] = []
    real = working.decode_pil

    def counting(data: bytes, *args: object, **kwargs: object) -> object:
        decodes.append(len(data))
        return real(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(working, "decode_pil", counting)
    files = [
        ("files", (f"{i}.jpg", _encode(1600 + 8 * i, 1200, "JPEG"), "image/jpeg")) for i in range(3)
    ]
    r = client.post("/index", files=files, data={"ids": '["a", "b", "c"]'})
    assert r.status_code == 201, r.text
    assert len(decodes) == 3
    timings = r.json()["timings_ms"]
    assert {"decode", "resize", "thumbnail", "inference", "store", "total"} <= set(timings)
    thumb = client.get("/items/b/thumbnail")
    assert thumb.status_code == 200
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 191)  # 1608x1200 -> 256 px


def test_uploads_beyond_max_pixels_keep_their_413(client: TestClient) -> None:
    status, body = _search(client, _encode(2000, 1001, "JPEG"))
    assert status == 413 and "2000x1001" in body["detail"], body
    r = client.post(
        "/index", files=[("files", ("big.png", _encode(2000, 1001, "PNG"), "image/png"))]
    )
    assert r.status_code == 413 and "2000x1001" in r.json()["detail"]
