"""The real service as a subprocess (`python -m app`) on 127.0.0.1 and a free port.

Every test here talks to it over loopback only. The process is started and stopped (SIGTERM,
SIGKILL) by its pid; its output goes to a log file the tests read."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from workbench.servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# Small and quiet: two shared cores, a tiny model.
BASE_ENV = {
    "SIMSEARCH_HOST": "127.0.0.1",
    "SIMSEARCH_INFERENCE__INTRA_OP_THREADS": "1",
    "SIMSEARCH_INFERENCE__DECODE_THREADS": "2",
    "SIMSEARCH_STORE__FAISS__THREADS": "1",
    "SIMSEARCH_LOG_LEVEL": "INFO",
    "SIMSEARCH_ACCESS_LOG": "false",
}


class ServerProcess:
    """One service process at a time on one data directory; restartable."""

    def __init__(
        self, data_dir: Path, model_dir: Path, log_dir: Path, **settings: object
    ) -> None:
        self.data_dir = data_dir
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.settings = {k.upper(): str(v) for k, v in settings.items()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.log_path = log_dir / "server-0.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIMSEARCH_")}
        env.update(BASE_ENV)
        env.update(
            SIMSEARCH_DATA_DIR=str(self.data_dir),
            SIMSEARCH_MODEL_DIR=str(self.model_dir),
            SIMSEARCH_PORT=str(self.port),
        )
        env.update({f"SIMSEARCH_{k}": v for k, v in self.settings.items()})
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (does not wait for readiness)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port = free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"server-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app"],
                cwd=REPO,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def start(self, timeout: float = 90.0) -> None:
        """Spawn and wait until /health/ready answers 200."""
        for _attempt in range(3):
            proc = self.spawn()
            if self.wait_ready(timeout):
                return
            if proc.poll() is None:
                self.kill()
                raise AssertionError(f"not ready after {timeout}s:\n{self.log()[-3000:]}")
            if "address already in use" not in self.log():  # lost a port race: retry
                break
        raise AssertionError(f"server exited with {proc.returncode}:\n{self.log()[-3000:]}")

    def wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return True
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def peak_rss_bytes(self) -> int | None:
        """VmHWM (peak resident set) of the server process, Linux only."""
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logs(self) -> str:
        """All logs of all starts, oldest first."""
        return "".join(
            (self.log_dir / f"server-{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
            if (self.log_dir / f"server-{i}.log").exists()
        )

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30.0), **kwargs)


# The `make_server` fixture: make_server(**settings) -> a ServerProcess on a fresh data dir.
MakeServer = Callable[..., ServerProcess]
