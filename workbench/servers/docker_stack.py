"""A Docker engine and a compose project, for tests/docker and workbench/bench/docker_images.py.

`docker_engine()` uses a running daemon, or (as root, with `dockerd` installed) starts one in
the background and stops exactly that process afterwards. `ComposeProject` drives one compose
project (its own name, so its containers and named volume never touch a user's stack).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class EngineUnavailable(RuntimeError):
    """No Docker engine can be reached or started here (the tests skip with this reason)."""


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@contextlib.contextmanager
def docker_engine(start_timeout_s: float = 60.0) -> Iterator[None]:
    """Yield with a Docker daemon answering; stop it afterwards only if this started it."""
    if _docker_answers():
        yield
        return
    dockerd = shutil.which("dockerd")
    if shutil.which("docker") is None or dockerd is None:
        raise EngineUnavailable("docker/dockerd not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker daemon runs and starting one needs root")
    with tempfile.TemporaryDirectory(prefix="simsearch-dockerd-") as tmp:
        log_path = Path(tmp) / "dockerd.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [dockerd, "--pidfile", str(Path(tmp) / "dockerd.pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + start_timeout_s
            while not _docker_answers():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise EngineUnavailable(f"dockerd did not come up:\n{tail}")
                time.sleep(1.0)
            yield
        finally:
            # SIGTERM lets dockerd stop its containers and its managed containerd.
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when present, else Debian's `docker-compose` (1.29)."""
    plugin = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineUnavailable("neither `docker compose` nor `docker-compose` is installed")


class ComposeProject:
    """One compose project over the repository's docker-compose.yml."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        profiles: Sequence[str] = (),
        files: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.env = {**os.environ, **env}
        self._base = [*compose_command(), "-p", name]
        if files:
            for file in ("docker-compose.yml", *files):
                self._base += ["-f", file]
        for profile in profiles:
            self._base += ["--profile", profile]

    def run(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._base, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def container_ids(self, service: str) -> list[str]:
        ids = self.run("ps", "-q", service).stdout.split()
        assert ids, f"no container for service {service!r}"
        return ids

    def container_id(self, service: str) -> str:
        ids = self.container_ids(service)
        assert len(ids) == 1, f"{len(ids)} containers for service {service!r}"
        return ids[0]

    def wait_healthy(self, service: str, timeout_s: float) -> float:
        """Seconds until the healthchecks of all the service's containers report healthy."""
        t0 = time.monotonic()
        for cid in self.container_ids(service):
            self._wait_container_healthy(service, cid, t0 + timeout_s)
        return time.monotonic() - t0

    def _wait_container_healthy(self, service: str, cid: str, deadline: float) -> None:
        t0 = time.monotonic()
        timeout_s = deadline - t0
        status = "unknown"
        while time.monotonic() - t0 < timeout_s:
            state = json.loads(
                subprocess.run(
                    ["docker", "inspect", "--format", "{{json .State}}", cid],
                    capture_output=True, text=True, timeout=30, check=True,
                ).stdout
            )
            status = (state.get("Health") or {}).get("Status", "none")
            if status == "healthy":
                return
            if not state.get("Running", False) and state.get("Restarting") is not True:
                break
            time.sleep(1.0)
        logs = subprocess.run(
            ["docker", "logs", "--tail", "60", cid], capture_output=True, text=True, timeout=30,
            check=False,
        )
        raise AssertionError(
            f"{service} not healthy after {timeout_s:.0f}s (status {status}):\n"
            f"{logs.stdout[-3000:]}\n{logs.stderr[-3000:]}"
        )


def image_exists(tag: str) -> bool:
    probe = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def image_size_bytes(tag: str) -> int:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return int(out.stdout.strip())


def wait_http_ok(url: str, timeout_s: float, interval_s: float = 0.2) -> float:
    """Seconds until GET url answers 200 (connection errors and 503 mean: not yet)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")



def published_port(cid: str, container_port: str = "8000/tcp") -> str:
    """HOST:PORT that docker bound for the container's port (the first, when several)."""
    out = subprocess.run(
        ["docker", "port", cid, container_port], capture_output=True, text=True, timeout=30,
        check=True,
    )
    return out.stdout.split()[0]
