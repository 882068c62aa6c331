from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import IndexSettings, InferenceSettings, LimitSettings, Settings
from app.main import create_app
from tests.app.onnx_models import write_tiny_model

REPO = Path(__file__).resolve().parents[3]
PHOTOS = REPO.parent / "shared" / "data" / "photos"


def photo_bytes(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def make_client(
    data_dir: Path, model_dir: Path, max_upload_bytes: int | None = None, **index: object
) -> TestClient:
    limits = (
        LimitSettings()
        if max_upload_bytes is None
        else LimitSettings(max_upload_bytes=max_upload_bytes)
    )
    settings = Settings(
        data_dir=data_dir,
        model_dir=model_dir,
        inference=InferenceSettings(intra_op_threads=1, decode_threads=2),
        index=IndexSettings(**index),
        limits=limits,
    )
    return TestClient(create_app(settings))


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/health').json()}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def photo_names() -> list[str]:
    if not PHOTOS.is_dir():
        pytest.skip("shared photos not available")
    return sorted(p.name for p in PHOTOS.glob("*.jpg"))


@pytest.fixture
def api_client(tmp_path: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, tiny_model_dir) as client:
        wait_ready(client)
        yield client
