from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from workbench.servers.docker_stack import REPO, EngineUnavailable, docker_engine

# The local Debian-built stand-in for python:3.11-slim (docker/base_image.sh).
LOCAL_BASE_IMAGE = "simsearch-base:py311-bookworm"


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    try:
        with docker_engine():
            yield
            # The classic builder leaves each build stage as an untagged image (torch: ~2 GB).
            subprocess.run(
                ["docker", "image", "prune", "--force", "--filter", "label=simsearch.build-stage"],
                check=False, timeout=300,
            )
    except EngineUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def base_image(engine: None) -> str:
    """SIMSEARCH_BASE_IMAGE when given (e.g. python:3.11-slim), else the local one, built once
    (also when given by its name, as `make test-docker` does by default)."""
    given = os.environ.get("SIMSEARCH_BASE_IMAGE")
    if given and given != LOCAL_BASE_IMAGE:
        return given
    subprocess.run(
        [str(REPO / "docker" / "base_image.sh"), LOCAL_BASE_IMAGE],
        check=True, timeout=1800,
    )
    return LOCAL_BASE_IMAGE


@pytest.fixture(scope="session")
def build_inputs() -> None:
    """docker/build-inputs/: the torch wheel (and CA_BUNDLE when set) from pip's config."""
    subprocess.run([str(REPO / "docker" / "build_inputs.sh")], check=True, timeout=900)

