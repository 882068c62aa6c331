"""One real server per test module (`python -m app`, tiny model, loopback) and a client that
starts each test on an empty store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simsearch_client import SimSearchClient
from tests.reliability.server import ServerProcess
from workbench.artifacts.tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("client_model"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("client_server")
    (root / "logs").mkdir()
    proc = ServerProcess(root / "data", model, root / "logs")
    proc.start()
    yield proc
    proc.terminate()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[SimSearchClient]:
    with SimSearchClient(server.url) as c:
        for item in list(c.iter_items()):
            c.delete_item(item.id)
        yield c
