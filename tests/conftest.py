"""Session-wide fixtures. `milvus_server`: a real Milvus standalone server (the `milvus` wheel
of the dev extra) in a temporary directory on a free loopback port, for tests marked
`milvus`; skipped where the wheel is not installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.servers.milvus_server import LocalMilvus


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMilvus]:
    if importlib.util.find_spec("milvus") is None or importlib.util.find_spec("pymilvus") is None:
        pytest.skip("the Milvus server wheel (`milvus`, dev extra) or pymilvus is not installed")
    data_dir: Path = tmp_path_factory.mktemp("milvus")
    # 20 ms time ticks: the store's acknowledgements (and strong_wait "read" reads) wait
    # ~20-40 ms instead of ~200-400 ms at Milvus's default.
    server = LocalMilvus(data_dir, time_tick_ms=20).start(timeout=180)
    try:
        yield server
    finally:
        server.stop()
