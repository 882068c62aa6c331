"""workbench/servers/service.py: the settings a benchmark gives the service reach it under the
names the service reads, and the service process starts the way the caller asks."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from workbench.artifacts.tiny_model import write_tiny_model
from workbench.servers.service import running, server_env, settings_for


def _only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's SIMSEARCH_ variables replaced by `env`."""
    for key in [k for k in os.environ if k.startswith("SIMSEARCH_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_server_env_names_groups_and_nested_groups_as_settings_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = server_env(
        tmp_path / "data",
        tmp_path / "model",
        {
            "inference.max_wait_ms": "7",
            "store.backend": "milvus",
            "store.milvus.uri": "http://127.0.0.1:1",
            "store.milvus.strong_wait": "read",
        },
    )
    assert env["SIMSEARCH_INFERENCE__MAX_WAIT_MS"] == "7"
    assert env["SIMSEARCH_STORE__MILVUS__URI"] == "http://127.0.0.1:1"
    _only(env, monkeypatch)
    settings = Settings()
    assert settings.data_dir == tmp_path / "data" and settings.model_dir == tmp_path / "model"
    assert settings.inference.max_wait_ms == 7.0
    assert settings.store.backend == "milvus"
    assert settings.store.milvus.uri == "http://127.0.0.1:1"
    assert settings.store.milvus.strong_wait == "read"


def test_the_launcher_serves_with_only_the_given_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIMSEARCH_ variable of the caller that the service would refuse is left out with
    inherit_settings=False; `python -m app` logs its bind decision and exits 0 on SIGTERM."""
    model = write_tiny_model(tmp_path / "model")
    monkeypatch.setenv("SIMSEARCH_STORE__BACKEND", "no-such-backend")
    env = server_env(tmp_path / "data", model, {})
    env["SIMSEARCH_LOG_LEVEL"] = "INFO"
    with running(
        env, tmp_path / "app.log", ready_timeout=120, launcher="app", inherit_settings=False
    ) as server:
        assert httpx.get(f"{server.base}/health/ready", timeout=5).status_code == 200
        assert "binding 127.0.0.1 (loopback)" in server.log_tail(chars=1_000_000)
    assert server.proc.returncode == 0


def test_a_service_that_exits_at_start_reports_the_end_of_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the caller's SIMSEARCH_ variables pass on: this one makes the service exit,
    and the error says why without opening the log file."""
    model = write_tiny_model(tmp_path / "model")
    monkeypatch.setenv("SIMSEARCH_STORE__BACKEND", "no-such-backend")
    env = server_env(tmp_path / "data", model, {})
    with (
        pytest.raises(RuntimeError, match="Input should be 'faiss' or 'milvus'"),
        running(env, tmp_path / "uvicorn.log", ready_timeout=120),
    ):
        pass


def test_settings_for_reaches_nested_groups(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path / "data",
        tmp_path / "model",
        {"store.milvus.uri": "http://127.0.0.1:19999", "inference.max_wait_ms": "3"},
    )
    assert settings.store.milvus.uri == "http://127.0.0.1:19999"
    assert settings.inference.max_wait_ms == 3
    assert settings.store.faiss == type(settings.store.faiss)()  # the sibling group untouched
