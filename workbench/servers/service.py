"""The service in a subprocess on a free loopback port (uvicorn app.main:app, or `python -m app`,
the launcher production runs) and the settings a benchmark gives it: `--set group.field=value`
pairs as SIMSEARCH_ variables or Settings."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

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
    """Settings as the service would build them from SIMSEARCH_ env variables; a key names its
    group by its dotted path ("inference.max_wait_ms", "store.milvus.uri")."""
    from app.config import Settings

    groups: dict[tuple[str, ...], dict[str, str]] = {}
    for key, value in sets.items():
        *path, field = key.split(".")
        groups.setdefault(tuple(path), {})[field] = value
    settings: Any = Settings(data_dir=data_dir, model_dir=model_dir)
    for group, fields in groups.items():
        settings = _with_fields(settings, group, fields)
    return settings


def _with_fields(model: Any, path: Sequence[str], fields: dict[str, str]) -> Any:
    """`model` with the group at `path` re-validated with `fields` changed (the rest kept)."""
    if not path:
        return type(model).model_validate({**model.model_dump(), **fields})
    head, *rest = path
    return model.model_copy(update={head: _with_fields(getattr(model, head), rest, fields)})


def server_env(data_dir: Path, model_dir: Path, sets: dict[str, str]) -> dict[str, str]:
    """SIMSEARCH_ variables: "inference.max_wait_ms" -> SIMSEARCH_INFERENCE__MAX_WAIT_MS, and a
    nested group the same way: "store.milvus.uri" -> SIMSEARCH_STORE__MILVUS__URI."""
    env = {
        "SIMSEARCH_DATA_DIR": str(data_dir),
        "SIMSEARCH_MODEL_DIR": str(model_dir),
        "SIMSEARCH_LOG_LEVEL": "WARNING",
    }
    for key, value in sets.items():
        env["SIMSEARCH_" + "__".join(part.upper() for part in key.split("."))] = value
    return env


# How the service process is started: uvicorn's command line, or `python -m app` (the launcher
# production runs: its bind check, graceful-shutdown timeout and access log come from Settings).
Launcher = Literal["uvicorn", "app"]


def _command(launcher: Launcher, port: int) -> list[str]:
    if launcher == "app":
        return [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


class Server:
    """The service on 127.0.0.1:<free port> in a subprocess, with `env` on top of this
    process's environment (without its SIMSEARCH_ variables when `inherit_settings` is False,
    so that only `env` configures the service)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        launcher: Launcher = "uvicorn",
        inherit_settings: bool = True,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("w")
        inherited = {
            k: v
            for k, v in os.environ.items()
            if inherit_settings or not k.startswith("SIMSEARCH_")
        }
        self.proc = subprocess.Popen(
            _command(launcher, self.port),
            cwd=REPO,
            env={**inherited, **env},
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

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the process's output so far."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL after `grace` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running(
    env: dict[str, str],
    log_path: Path,
    *,
    ready_timeout: float,
    stop_grace: float = 30.0,
    launcher: Launcher = "uvicorn",
    inherit_settings: bool = True,
) -> Iterator[Server]:
    """A ready Server for the `with` block, stopped after it. If it exits or is not ready in
    `ready_timeout` s, the error carries the end of its log (the log may live in a temporary
    folder that is gone by the time anyone reads the error)."""
    server = Server(env, log_path, launcher=launcher, inherit_settings=inherit_settings)
    try:
        try:
            server.wait_ready(ready_timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}\n{server.log_tail()}") from exc
        yield server
    finally:
        server.stop(stop_grace)
