from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.server import MakeServer, ServerProcess
from workbench.artifacts.tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny ONNX graph (32-d), shared by every server in this folder."""
    return write_tiny_model(tmp_path_factory.mktemp("reliability_model"))


@pytest.fixture
def make_server(tmp_path: Path, tiny_model: Path) -> Iterator[MakeServer]:
    """Factory: make_server(**settings) -> ServerProcess on a fresh data dir; all killed after."""
    servers: list[ServerProcess] = []

    def make(data_dir: Path | None = None, **settings: object) -> ServerProcess:
        n = len(servers)
        logs = tmp_path / f"logs{n}"
        logs.mkdir()
        server = ServerProcess(data_dir or tmp_path / f"data{n}", tiny_model, logs, **settings)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()
