"""POST /index through uvicorn (app.main:app): --clients clients each sending
--files-per-request files, images/s against raw onnxruntime measured on the same photos' model
inputs right before and after each block (the ratio), and the server's own per-stage timings
(decode, resize, thumbnail, inference, store, duplicates) per image."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import cpu_seconds, loadavg, log
from workbench.bench.raw_ort import RawOrt, against_raw, raw_measure
from workbench.servers.service import Server, server_env

# --duplicate-check: rows with POST /index's per-file duplicate report, without it, or both.
DUPLICATE_CHECKS = {"on": [True], "off": [False], "both": [True, False]}


async def index_block(
    base: str,
    photos: list[tuple[str, bytes]],
    requests: int,
    files_per_request: int,
    clients: int,
    tag: str,
    check_duplicates: bool = True,
) -> tuple[float, list[float], list[dict]]:
    """`requests` POST /index of `files_per_request` photos each, shared by `clients`
    connections: (wall seconds, seconds per request, the response bodies)."""
    import httpx

    counter = iter(range(requests))
    lat: list[float] = []
    bodies: list[dict] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=900.0, limits=limits) as client:

        async def worker() -> None:
            for r in counter:
                picks = [
                    photos[(r * files_per_request + k) % len(photos)]
                    for k in range(files_per_request)
                ]
                files = [("files", (n, b, "image/jpeg")) for n, b in picks]
                ids = json.dumps([f"{tag}-{r}-{k}" for k in range(files_per_request)])
                t = time.perf_counter()
                form = {"ids": ids}
                if not check_duplicates:
                    form["check_duplicates"] = "false"
                resp = await client.post("/index", files=files, data=form)
                if resp.status_code != 201:
                    raise RuntimeError(f"/index: {resp.status_code} {resp.text[:300]}")
                lat.append(time.perf_counter() - t)
                bodies.append(resp.json())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, lat, bodies


def http_index(
    server: Server,
    name: str,
    photos: list[tuple[str, bytes]],
    tensors: list[list[np.ndarray]],
    raw: RawOrt,
    args: argparse.Namespace,
    check_duplicates: bool = True,
) -> dict[str, Any]:
    """`--repeats` blocks, each between two raw measurements on the same photos' inputs.
    `check_duplicates=False`: the uploads opt out of the per-file duplicate report, as the
    client's folder loader does."""
    n_images = args.requests * args.files_per_request
    blocks: list[dict[str, float]] = []
    stages: dict[str, list[float]] = {}
    before = raw_measure(raw, tensors)
    for b in range(args.repeats):
        c0 = cpu_seconds(server.proc.pid)
        wall, lat, bodies = asyncio.run(
            index_block(
                server.base,
                photos,
                args.requests,
                args.files_per_request,
                args.clients,
                f"{name}-{b}-{time.monotonic_ns()}",
                check_duplicates,
            )
        )
        server_cpu = cpu_seconds(server.proc.pid) - c0
        after = raw_measure(raw, tensors)
        blocks.append(
            {
                **against_raw(n_images, wall, server_cpu, before, after),
                "p50_request_s": float(np.median(lat)),
            }
        )
        for body in bodies:
            for key, ms in body.get("timings_ms", {}).items():
                stages.setdefault(key, []).append(ms / args.files_per_request)
        before = after

    def med(key: str) -> float:
        return float(np.median([blk[key] for blk in blocks]))

    return {
        "set": name,
        "endpoint": "POST /index",
        "check_duplicates": check_duplicates,
        "clients": args.clients,
        "files_per_request": args.files_per_request,
        "images": n_images * args.repeats,
        "images_per_s": round(med("images_per_s"), 3),
        "raw_images_per_s": round(med("raw_images_per_s"), 3),
        "ratio_to_raw": round(med("ratio"), 3),
        "ratio_per_block": [round(blk["ratio"], 3) for blk in blocks],
        "server_cpu_s_per_image": round(med("server_cpu_s_per_image"), 4),
        "raw_cpu_s_per_image": round(med("raw_cpu_s_per_image"), 4),
        "request_p50_ms": round(med("p50_request_s") * 1e3, 1),
        # The server's timings_ms per image: decode/resize/thumbnail are thread time summed
        # over the request's files, inference includes queueing, store is the durable add.
        "server_ms_per_image": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
        "loadavg": loadavg(),
    }


def http_rows(
    args: argparse.Namespace,
    work: Path,
    sets: dict[str, list[tuple[str, bytes]]],
    tensors: dict[str, list[list[np.ndarray]]],
    raw: RawOrt,
) -> list[dict[str, Any]]:
    """One server with the service's defaults; after a warm-up request, one row per photo set
    (web, phone) and duplicate-check choice."""
    server = Server(server_env(work / "server", args.model_dir, {}), work / "server.log")
    try:
        server.wait_ready(args.ready_timeout)
        asyncio.run(index_block(server.base, sets["web"], 2, args.files_per_request, 1, "warm"))
        rows = []
        for name in ("web", "phone"):
            for check in DUPLICATE_CHECKS[args.duplicate_check]:
                rows.append(http_index(server, name, sets[name], tensors[name], raw, args, check))
                log(
                    f"photos: http {name} (duplicate check {check}): "
                    f"{rows[-1]['images_per_s']} img/s, {rows[-1]['ratio_to_raw']} x raw "
                    f"{rows[-1]['ratio_per_block']}"
                )
        return rows
    finally:
        server.stop()
