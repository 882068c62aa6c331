#!/usr/bin/env python
"""Image sizes and start-up times of the docker compose stack (CPU `api` service). Prints JSON.

    python -m workbench.bench.docker_images --base-image simsearch-base:py311-bookworm --runs 3

Builds the image through compose (cached layers make this quick after the first build), then
in a throw-away compose project on a free loopback port measures, per run:
  first_start  `up -d` on an empty named volume (the entrypoint installs the default model and
               indexes the bundled samples) until GET /health/ready answers 200, and until the
               container healthcheck reports healthy (polled every 15 s, so up to 15 s later);
  restart      `down` (the volume stays) then `up -d`, the same two times.
The project and its volume are removed at the end. Needs a running Docker daemon.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from workbench.servers.docker_stack import (
    ComposeProject,
    image_size_bytes,
    wait_http_ok,
)
from workbench.servers.ports import free_port

IMAGE = "dolg-simsearch:cpu"  # docker-compose.yml, service `api`
TIMEOUT_S = 600.0


def _start(project: ComposeProject, ready_url: str) -> dict[str, float]:
    t0 = time.monotonic()
    project.run("up", "-d", "api", timeout=TIMEOUT_S)
    up_s = time.monotonic() - t0
    ready_s = wait_http_ok(ready_url, TIMEOUT_S)
    healthy_s = project.wait_healthy("api", TIMEOUT_S)
    return {
        "up_command_s": round(up_s, 2),
        "ready_s": round(up_s + ready_s, 2),
        "healthy_s": round(up_s + ready_s + healthy_s, 2),
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default="python:3.11-slim")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--project", default="simsearch-bench")
    args = parser.parse_args(argv)

    port = free_port()
    project = ComposeProject(
        args.project,
        {"SIMSEARCH_BASE_IMAGE": args.base_image, "SIMSEARCH_PUBLISH_PORT": str(port)},
    )
    ready_url = f"http://127.0.0.1:{port}/health/ready"
    project.run("build", "api", timeout=3000)
    first: list[dict[str, float]] = []
    restart: list[dict[str, float]] = []
    try:
        for _ in range(args.runs):
            project.run("down", "-v", timeout=TIMEOUT_S)
            first.append(_start(project, ready_url))
            project.run("down", timeout=TIMEOUT_S)
            restart.append(_start(project, ready_url))
    finally:
        project.run("down", "-v", timeout=TIMEOUT_S)

    result: dict[str, Any] = {
        "image": IMAGE,
        "base_image": args.base_image,
        "image_size_mb": round(image_size_bytes(IMAGE) / 1e6, 1),
        "base_image_size_mb": round(image_size_bytes(args.base_image) / 1e6, 1),
        "runs": args.runs,
        "first_start": {"median": _summary(first), "each": first},
        "restart": {"median": _summary(restart), "each": restart},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
