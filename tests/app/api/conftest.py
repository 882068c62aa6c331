from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import (
    FaissSettings,
    IndexSettings,
    InferenceSettings,
    LimitSettings,
    Settings,
    StoreSettings,
)
from app.main import create_app
from workbench.artifacts.tiny_model import write_tiny_model

REPO = Path(__file__).resolve().parents[3]
PHOTOS = REPO.parent / "shared" / "data" / "photos"


def photo_bytes(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def make_client(
    data_dir: Path, model_dir: Path, max_upload_bytes: int | None = None, **knobs: object
) -> TestClient:
    """`knobs`: fields of IndexSettings (index.*) or FaissSettings (store.faiss.*)."""
    index = {k: v for k, v in knobs.items() if k in IndexSettings.model_fields}
    faiss = {k: v for k, v in knobs.items() if k in FaissSettings.model_fields}
    unknown = set(knobs) - set(index) - set(faiss)
    assert not unknown, f"not an index or FAISS setting: {sorted(unknown)}"
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
        store=StoreSettings(faiss=FaissSettings(**faiss)),
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
