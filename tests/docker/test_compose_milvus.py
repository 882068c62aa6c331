"""The `milvus` profile for real: stateless API replicas on one Milvus server, behind one
health-checked endpoint (HAProxy, `api-milvus-lb`).

With the profile's official images present locally (milvusdb/milvus, etcd, MinIO) the profile
runs as it is; without an image registry the `milvus` service is replaced by the single-container
Milvus built from the PyPI `milvus` wheel (docker/compose.local-milvus.yml, Milvus 2.3.5).
Slow, needs Docker: `make test-docker`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from workbench.servers.docker_stack import (
    REPO,
    ComposeProject,
    image_exists,
    published_port,
    wait_http_ok,
)
from workbench.servers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(3600)]

PHOTOS = REPO.parent / "shared" / "data" / "photos"
SAMPLES = REPO / "index_data" / "samples"
HEALTHY_WITHIN_S = 300.0
LOCAL_MILVUS_OVERRIDE = "docker/compose.local-milvus.yml"
PROFILE_SERVICES = ("milvus-etcd", "milvus-minio", "milvus")


@dataclass
class MilvusStack:
    project: ComposeProject
    replica_urls: list[str]
    lb_url: str
    official: bool


def _photos() -> list[Path]:
    folder = PHOTOS if PHOTOS.is_dir() else SAMPLES
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def _official_images_present() -> bool:
    cfg = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return all(image_exists(cfg["services"][name]["image"]) for name in PROFILE_SERVICES)


def _two_free_ports() -> tuple[int, int]:
    """A free loopback port p with p + 1 free too (the replicas' host port range)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            return port, port + 1
        except OSError:
            continue
    raise RuntimeError("no two consecutive free loopback ports")


@pytest.fixture(scope="module")
def milvus_stack(base_image: str, build_inputs: None) -> Iterator[MilvusStack]:
    cfg = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    if "api-milvus" not in cfg["services"]:
        pytest.skip("docker-compose.yml has no `milvus` profile in this build")
    official = _official_images_present()
    first, last = _two_free_ports()
    project = ComposeProject(
        "simsearch-dockertest-milvus",
        {
            "SIMSEARCH_BASE_IMAGE": base_image,
            "SIMSEARCH_MILVUS_PUBLISH_PORT": str(free_port()),
            "SIMSEARCH_MILVUS_API_PORTS": f"{first}-{last}",
            "SIMSEARCH_API_REPLICAS": "2",
            "SIMSEARCH_MILVUS_LB_PORT": str(free_port()),
        },
        profiles=["milvus"],
        files=() if official else [LOCAL_MILVUS_OVERRIDE],
    )
    project.run("down", "-v", "--remove-orphans", timeout=300)
    try:
        if official:
            project.run("build", "api-milvus", "api-milvus-lb", timeout=3000)
            project.run("up", "-d", "api-milvus", "api-milvus-lb", timeout=600)
        else:
            # --no-deps: the profile's depends_on names etcd and MinIO, which the
            # single-container Milvus does not need (and which cannot be pulled here).
            project.run("build", "milvus", "api-milvus", "api-milvus-lb", timeout=3000)
            _up_local(project)
        project.wait_healthy("api-milvus", HEALTHY_WITHIN_S)
        project.wait_healthy("api-milvus-lb", HEALTHY_WITHIN_S)
        urls = [f"http://{published_port(cid)}" for cid in project.container_ids("api-milvus")]
        lb = f"http://{published_port(project.container_id('api-milvus-lb'), '8080/tcp')}"
        yield MilvusStack(project, urls, lb, official)
    finally:
        project.run("down", "-v", "--remove-orphans", timeout=300)


def _up_local(project: ComposeProject) -> None:
    project.run("up", "-d", "--no-deps", "milvus", timeout=600)
    project.wait_healthy("milvus", HEALTHY_WITHIN_S)
    project.run("up", "-d", "--no-deps", "api-milvus", timeout=600)
    project.run("up", "-d", "--no-deps", "api-milvus-lb", timeout=600)


def _search_photo(url: str, photo: Path) -> httpx.Response:
    return httpx.post(
        f"{url}/search",
        files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={"top_k": "3"},
        timeout=120,
    )


def test_replicas_report_the_milvus_backend(milvus_stack: MilvusStack) -> None:
    assert len(milvus_stack.replica_urls) == 2
    for url in milvus_stack.replica_urls:
        health = httpx.get(f"{url}/health", timeout=60).json()
        assert health["status"] == "ok", health
        # The store is the Milvus service of the compose network, not a local FAISS index.
        assert health["index"]["params"].get("uri") == "http://milvus:19530", health["index"]


def test_indexed_on_one_replica_found_on_the_other(milvus_stack: MilvusStack) -> None:
    writer, reader = milvus_stack.replica_urls
    photos = _photos()[:8]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    created = httpx.post(
        f"{writer}/index",
        files=files,
        data={"ids": [f"m/{p.stem}" for p in photos]},
        timeout=300,
    )
    assert created.status_code == 201, created.text
    for photo in photos[::3]:
        found = httpx.post(
            f"{reader}/search",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            data={"top_k": "3"},
            timeout=120,
        )
        assert found.status_code == 200, found.text
        top = found.json()["results"][0]
        assert top["id"] == f"m/{photo.stem}" and top["score"] > 0.99


def test_the_load_balancer_indexes_and_searches_through_the_replicas(
    milvus_stack: MilvusStack,
) -> None:
    lb = milvus_stack.lb_url
    assert httpx.get(f"{lb}/lb-health", timeout=30).status_code == 200
    health = httpx.get(f"{lb}/health", timeout=60).json()
    assert health["index"]["params"].get("uri") == "http://milvus:19530", health["index"]
    photos = _photos()[8:14]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    created = httpx.post(
        f"{lb}/index",
        files=files,
        data={"ids": [f"lb/{p.stem}" for p in photos]},
        timeout=300,
    )
    assert created.status_code == 201, created.text
    # Right after the 201, through the balancer and through each replica directly.
    for url in (lb, lb, *milvus_stack.replica_urls):
        for photo in photos[::2]:
            found = _search_photo(url, photo)
            assert found.status_code == 200, found.text
            assert found.json()["results"][0]["id"] == f"lb/{photo.stem}"
    by_id = httpx.post(
        f"{lb}/search/by-id",
        json={"id": f"lb/{photos[0].stem}", "include_self": True},
        timeout=60,
    )
    assert by_id.status_code == 200 and by_id.json()["results"][0]["id"] == f"lb/{photos[0].stem}"


def test_the_load_balancer_skips_a_stopped_replica(milvus_stack: MilvusStack) -> None:
    """HAProxy health-checks the replicas: with one stopped, every request still succeeds."""
    lb = milvus_stack.lb_url
    probe = _photos()[0]
    victim = milvus_stack.project.container_ids("api-milvus")[0]
    subprocess.run(["docker", "stop", "-t", "30", victim], check=True, timeout=120)
    try:
        time.sleep(5)  # two failed checks, 2 s apart: the replica is out of the rotation
        assert httpx.get(f"{lb}/lb-health", timeout=30).status_code == 200
        for _ in range(8):
            found = _search_photo(lb, probe)
            assert found.status_code == 200, found.text
            assert found.json()["results"][0]["id"] == f"m/{probe.stem}"
    finally:
        subprocess.run(["docker", "start", victim], check=True, timeout=120)
        milvus_stack.project.wait_healthy("api-milvus", HEALTHY_WITHIN_S)
    # Back in the rotation: the balancer answers for it again.
    wait_http_ok(f"{lb}/lb-health", 60)


def test_down_then_up_keeps_the_collection(milvus_stack: MilvusStack) -> None:
    probe = _photos()[-1]
    writer = milvus_stack.replica_urls[0]
    created = httpx.post(
        f"{writer}/index",
        files={"files": (probe.name, probe.read_bytes(), "image/jpeg")},
        data={"ids": "m/persisted"},
        timeout=300,
    )
    assert created.status_code == 201, created.text

    project = milvus_stack.project
    project.run("down", timeout=300)  # no -v: milvus-data stays
    if milvus_stack.official:
        project.run("up", "-d", "api-milvus", "api-milvus-lb", timeout=600)
    else:
        _up_local(project)
    project.wait_healthy("api-milvus", HEALTHY_WITHIN_S)
    project.wait_healthy("api-milvus-lb", HEALTHY_WITHIN_S)

    lb = f"http://{published_port(project.container_id('api-milvus-lb'), '8080/tcp')}"
    urls = [f"http://{published_port(cid)}" for cid in project.container_ids("api-milvus")]
    for url in (lb, *urls):
        found = _search_photo(url, probe)
        assert found.status_code == 200, found.text
        assert found.json()["results"][0]["id"] == "m/persisted"
