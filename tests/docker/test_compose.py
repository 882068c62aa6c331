"""`docker compose up` for real: build the CPU image, run the stack, use it over HTTP.

Slow (image build, model export in a build stage, container start-up): `make test-docker`.
Needs Docker (started here as root if no daemon runs) and PyPI reachable from build
containers; never part of `make test` or CI.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from workbench.servers.docker_stack import REPO, ComposeProject
from workbench.servers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(3600)]

SHARED_PHOTOS = REPO.parent / "shared" / "data" / "photos"
BUNDLED_SAMPLES = REPO / "index_data" / "samples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
HEALTHY_WITHIN_S = 300.0
NON_ROOT_UID = "10001"  # useradd --uid in docker/Dockerfile


@dataclass
class Stack:
    project: ComposeProject
    url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0)


def _photos() -> list[Path]:
    folder = SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else BUNDLED_SAMPLES
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    assert len(photos) >= 5, f"too few photos in {folder}"
    return photos


@pytest.fixture(scope="module")
def cpu_stack(base_image: str, build_inputs: None) -> Iterator[Stack]:
    port = free_port()
    project = ComposeProject(
        "simsearch-dockertest",
        {"SIMSEARCH_BASE_IMAGE": base_image, "SIMSEARCH_PUBLISH_PORT": str(port)},
    )
    project.run("down", "-v", "--remove-orphans", timeout=300)
    project.run("build", "api", timeout=3000)
    try:
        project.run("up", "-d", "api", timeout=300)
        project.wait_healthy("api", HEALTHY_WITHIN_S)
        yield Stack(project, f"http://127.0.0.1:{port}")
    finally:
        project.run("down", "-v", "--remove-orphans", timeout=300)


def test_port_is_published_on_loopback_only(cpu_stack: Stack) -> None:
    cid = cpu_stack.project.container_id("api")
    bound = subprocess.run(
        ["docker", "port", cid, "8000/tcp"], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout.split()
    assert bound == [cpu_stack.url.removeprefix("http://")]


def test_container_runs_as_non_root_user(cpu_stack: Stack) -> None:
    cid = cpu_stack.project.container_id("api")
    uid = subprocess.run(
        ["docker", "exec", cid, "id", "-u"], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout.strip()
    assert uid == NON_ROOT_UID
    # The server process itself (PID 1 after the entrypoint's exec), not just `docker exec`.
    status = subprocess.run(
        ["docker", "exec", cid, "cat", "/proc/1/status"], capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [NON_ROOT_UID] * 4
    cmdline = subprocess.run(
        ["docker", "exec", cid, "cat", "/proc/1/cmdline"], capture_output=True, timeout=60,
        check=True,
    ).stdout.split(b"\0")
    assert cmdline[:3] == [b"python", b"-m", b"app"]


def test_image_has_no_torch(cpu_stack: Stack) -> None:
    cid = cpu_stack.project.container_id("api")
    probe = subprocess.run(
        ["docker", "exec", cid, "python", "-c",
         "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert probe.stdout.strip() == "True"


def test_health_reports_the_default_model_and_samples(cpu_stack: Stack) -> None:
    with cpu_stack.client() as client:
        health = client.get("/health").json()
    assert health["status"] == "ok", health
    # The entrypoint indexed the image's bundled samples on first start.
    n_samples = sum(1 for p in BUNDLED_SAMPLES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    assert health["index"]["ntotal"] >= n_samples


def test_index_and_search_photos_through_the_published_port(cpu_stack: Stack) -> None:
    photos = _photos()
    with cpu_stack.client() as client:
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        ids = [("ids", f"photo/{p.stem}") for p in photos]
        created = client.post("/index", files=files, data=dict(ids=[v for _, v in ids]))
        assert created.status_code == 201, created.text
        assert created.json()["count"] == len(photos)
        # Each indexed photo finds itself first (same bytes, same model: cosine ~1).
        for photo in photos[:: max(1, len(photos) // 4)]:
            found = client.post(
                "/search", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                data={"top_k": "5"},
            )
            assert found.status_code == 200, found.text
            top = found.json()["results"][0]
            assert top["id"] == f"photo/{photo.stem}"
            assert top["score"] > 0.99


def test_page_or_docs_load(cpu_stack: Stack) -> None:
    with cpu_stack.client() as client:
        root = client.get("/")
        if root.status_code == 404:  # no page at / in this build: the OpenAPI page instead
            docs = client.get("/docs")
            assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
        else:
            assert root.status_code == 200, root.text[:500]
            assert "text/html" in root.headers["content-type"]


def test_down_then_up_keeps_the_data_in_the_named_volume(cpu_stack: Stack) -> None:
    probe = _photos()[0]
    with cpu_stack.client() as client:
        created = client.post(
            "/index", files={"files": (probe.name, probe.read_bytes(), "image/jpeg")},
            data={"ids": "persisted/probe"},
        )
        assert created.status_code == 201, created.text
        before = client.get("/health").json()["index"]["ntotal"]

    cpu_stack.project.run("down", timeout=300)  # no -v: the named volume stays
    cpu_stack.project.run("up", "-d", "api", timeout=300)
    cpu_stack.project.wait_healthy("api", HEALTHY_WITHIN_S)

    with cpu_stack.client() as client:
        assert client.get("/health").json()["index"]["ntotal"] == before
        item = client.get("/items/persisted/probe")
        assert item.status_code == 200, item.text
        found = client.post(
            "/search", files={"file": (probe.name, probe.read_bytes(), "image/jpeg")},
            data={"top_k": "3"},
        )
        assert "persisted/probe" in [hit["id"] for hit in found.json()["results"]]

