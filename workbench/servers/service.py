"""The service in a subprocess (uvicorn app.main:app on a free loopback port) and the settings
a benchmark gives it: `--set group.field=value` pairs as SIMSEARCH_ variables or Settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.bench.common import rss
from workbench.servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    """--set inference.max_wait_ms=2 -> {"inference.max_wait_ms": "2"}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set expects group.field=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def settings_for(data_dir: Path, model_dir: Path, sets: dict[str, str]) -> Any:
    """Settings as the service would build them from SIMSEARCH_ env variables."""
    from app.config import Settings

    groups: dict[str, dict[str, str]] = {}
    for key, value in sets.items():
        group, field = key.split(".", 1)
        groups.setdefault(group, {})[field] = value
    base = Settings(data_dir=data_dir, model_dir=model_dir)
    update: dict[str, Any] = {}
    for group, fields in groups.items():
        current = getattr(base, group)
        update[group] = type(current).model_validate({**current.model_dump(), **fields})
    return base.model_copy(update=update)


def server_env(data_dir: Path, model_dir: Path, sets: dict[str, str]) -> dict[str, str]:
    env = {
        "SIMSEARCH_DATA_DIR": str(data_dir),
        "SIMSEARCH_MODEL_DIR": str(model_dir),
        "SIMSEARCH_LOG_LEVEL": "WARNING",
    }
    for key, value in sets.items():
        group, field = key.split(".", 1)
        env[f"SIMSEARCH_{group.upper()}__{field.upper()}"] = value
    return env


class Server:
    """uvicorn app.main:app on 127.0.0.1:<free port> in a subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> float:
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self._log.name}"
                )
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout}s; see {self._log.name}")

    def rss(self) -> dict[str, float]:
        return rss(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
