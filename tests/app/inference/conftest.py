from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.config import InferenceSettings, LimitSettings
from app.inference.batcher import DynamicBatcher
from app.inference.embedder import Embedder
from app.inference.session import OnnxSession
from tests.app.onnx_models import TinyArtifact, write_artifact

# tests/app/inference/conftest.py -> repo root is parents[3]; shared data sits beside it.
PHOTOS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "photos"
PHOTO = "lomiri_dragonfly.jpg"  # 1024x768 RGB JPEG


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifact:
    """1x1-conv graph, official preprocessing (5 scales, BGR, max side 1024)."""
    return write_artifact(tmp_path_factory.mktemp("tiny_artifact"))


@pytest.fixture(scope="session")
def cpu_settings() -> InferenceSettings:
    return InferenceSettings(providers="cpu", intra_op_threads=1)


@pytest.fixture(scope="session")
def tiny_session(tiny_artifact: TinyArtifact, cpu_settings: InferenceSettings) -> OnnxSession:
    return OnnxSession(tiny_artifact.model_path, tiny_artifact.meta, cpu_settings)


@pytest.fixture
def batcher(tiny_session: OnnxSession) -> Iterator[DynamicBatcher]:
    b = DynamicBatcher(tiny_session.run, max_batch=8, max_wait_ms=2.0, queue_size=64)
    yield b
    b.close()


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-decode") as pool:
        yield pool


@pytest.fixture
def embedder(
    tiny_artifact: TinyArtifact, batcher: DynamicBatcher, executor: ThreadPoolExecutor
) -> Embedder:
    return Embedder(tiny_artifact.meta, batcher, executor, LimitSettings())


@pytest.fixture(scope="session")
def photo_path() -> Path:
    path = PHOTOS / PHOTO
    if not path.is_file():
        pytest.skip(f"shared photo {path} not available")
    return path


@pytest.fixture(scope="session")
def photo_bytes(photo_path: Path) -> bytes:
    return photo_path.read_bytes()

