#!/usr/bin/env python
"""Embedding benchmark: raw onnxruntime vs the service's Embedder vs HTTP through uvicorn.

    python -m workbench.bench.embed --model-dir DIR [--photos ../shared/data/photos]
        [--concurrency 1,8,32] [--set inference.jpeg_draft=true ...]

Prints one JSON object (last stdout line); workbench/bench/suite.py calls it and renders the table.

1. raw: `InferenceSession.run` (the service's session options: threads, spinning, graph
   optimisation) on tensors the service's preprocessing made beforehand, one image's scales
   back to back (batch 1), and grouped by shape into batches of up to max_batch. The larger of
   the two is the raw limit: nothing the service does on top can be faster.
2. embedder: the service's `Runtime` (decode + cap + multi-scale preprocessing in the decode
   pool, dynamic batcher, session, pooling), `embed_bytes` from N concurrent asyncio tasks.
3. http: `uvicorn app.main:app` in a subprocess on 127.0.0.1 (free port), an httpx client with
   N concurrent requests: `POST /index` (one JPEG per request, a new id each) and
   `POST /search` (top_k 10; the server's own `timings_ms` are summarised per stage).

The raw limit is measured in rounds interleaved with the embedder, and again right before and
after each HTTP block, so every ratio compares figures taken minutes apart at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import REPO, cpu_seconds, loadavg, log, summarize_s
from workbench.bench.inputs import (
    artifact_with_scales,
    default_photos_dir,
    load_photos,
    prepare_tensors,
)
from workbench.bench.raw_ort import RawOrt, against_raw, raw_measure
from workbench.servers.service import Server, parse_sets, server_env, settings_for


# ---------------------------------------------------------------------------- preprocessing
def preprocess_cost(blobs: list[bytes], settings: Any, prep: Any, reps: int = 3) -> dict:
    """CPU ms per image of decode, long-side cap and multi-scale tensors: exact decode vs JPEG
    draft decode (libjpeg DCT scaling), every photo, best of `reps` passes."""
    from app.inference.preprocess import cap_long_side, decode_image, preprocess_multiscale

    def one_pass(draft: bool) -> list[float]:
        totals = [0.0, 0.0, 0.0]
        for data in blobs:
            c0 = time.process_time()
            img = decode_image(
                data, settings.limits.max_pixels, draft_max_side=prep.max_side if draft else None
            )
            c1 = time.process_time()
            capped = cap_long_side(img, prep.max_side)
            c2 = time.process_time()
            preprocess_multiscale(capped, prep)
            c3 = time.process_time()
            for i, v in enumerate((c1 - c0, c2 - c1, c3 - c2)):
                totals[i] += v * 1e3 / len(blobs)
        return totals

    out = {}
    for draft in (False, True):
        best = min((one_pass(draft) for _ in range(reps)), key=sum)
        out["draft" if draft else "exact"] = {
            "decode_ms": round(best[0], 2),
            "cap_ms": round(best[1], 2),
            "multiscale_ms": round(best[2], 2),
            "total_ms": round(sum(best), 2),
        }
    return out


# ---------------------------------------------------------------------------- embedder
async def _drive(
    n_requests: int, concurrency: int, call: Any
) -> tuple[float, list[float], list[Any]]:
    """n_requests calls of `call(i)` from `concurrency` workers: (wall s, latencies, results)."""
    counter = iter(range(n_requests))
    lat: list[float] = []
    results: list[Any] = []

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            results.append(await call(i))
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, results


def embedder_measure(runtime: Any, blobs: list[bytes], n: int, concurrency: int) -> dict:
    async def call(i: int) -> None:
        await runtime.embedder.embed_bytes(blobs[i % len(blobs)])

    before = dict(runtime.batcher.stats.batch_sizes)
    c0 = cpu_seconds()
    wall, lat, _ = asyncio.run(_drive(n, concurrency, call))
    cpu = (cpu_seconds() - c0) / n
    after = runtime.batcher.stats.batch_sizes
    sizes = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    mean_batch = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
    return {
        "concurrency": concurrency,
        "requests": n,
        "images_per_s": round(n / wall, 3),
        "latency": summarize_s(lat),
        "mean_batch": round(mean_batch, 2),
        "cpu_s_per_image": round(cpu, 4),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------------------- http
async def _http_block(
    base: str,
    endpoint: str,
    photos: list[tuple[str, bytes]],
    n: int,
    concurrency: int,
    tag: str,
) -> tuple[float, list[float], list[dict]]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=900.0, limits=limits) as client:

        async def call(i: int) -> dict:
            name, data = photos[i % len(photos)]
            if endpoint == "index":
                r = await client.post(
                    "/index",
                    files={"files": (name, data, "image/jpeg")},
                    data={"ids": f"{tag}-{i}"},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"/index: {r.status_code} {r.text[:300]}")
            else:
                r = await client.post(
                    "/search", files={"file": (name, data, "image/jpeg")}, data={"top_k": "10"}
                )
                if r.status_code != 200:
                    raise RuntimeError(f"/search: {r.status_code} {r.text[:300]}")
            return r.json()

        return await _drive(n, concurrency, call)


def http_measure(
    server: Server,
    endpoint: str,
    photos: list[tuple[str, bytes]],
    n: int,
    concurrency: int,
    raw: RawOrt,
    tensors: list[list[np.ndarray]],
    repeats: int,
) -> dict[str, Any]:
    """`repeats` blocks of n requests, each between two raw measurements (its limit is their
    mean): images/s and ratios are medians over blocks, latencies pooled over blocks."""
    lat: list[float] = []
    stages: dict[str, list[float]] = {}
    blocks: list[dict[str, float]] = []
    before = raw_measure(raw, tensors)
    for _ in range(repeats):
        tag = f"bench-{endpoint}-c{concurrency}-{time.monotonic_ns()}"
        c0, client0 = cpu_seconds(server.proc.pid), cpu_seconds()
        wall, block_lat, bodies = asyncio.run(
            _http_block(server.base, endpoint, photos, n, concurrency, tag)
        )
        server_cpu = cpu_seconds(server.proc.pid) - c0
        client_cpu = (cpu_seconds() - client0) / n
        after = raw_measure(raw, tensors)
        lat += block_lat
        for body in bodies:
            for key, ms in (body.get("timings_ms") or {}).items():
                stages.setdefault(key, []).append(ms / 1e3)
        block = against_raw(n, wall, server_cpu, before, after)
        blocks.append(
            {
                **block,
                "cpu_ratio": block["raw_cpu_s_per_image"] / block["server_cpu_s_per_image"],
                "client_cpu_s_per_request": client_cpu,
                "raw_p50_ms": (before["latency"]["p50_ms"] + after["latency"]["p50_ms"]) / 2,
            }
        )
        before = after

    def med(key: str) -> float:
        return float(np.median([b[key] for b in blocks]))

    out: dict[str, Any] = {
        "endpoint": f"POST /{endpoint}",
        "concurrency": concurrency,
        "requests": n * repeats,
        "blocks": repeats,
        "images_per_s": round(med("images_per_s"), 3),
        "latency": summarize_s(lat),
        "raw_images_per_s": round(med("raw_images_per_s"), 3),
        "raw_p50_ms": round(med("raw_p50_ms"), 1),
        "ratio_to_raw": round(med("ratio"), 3),
        "ratio_per_block": [round(b["ratio"], 3) for b in blocks],
        "server_cpu_s_per_image": round(med("server_cpu_s_per_image"), 4),
        "raw_cpu_s_per_image": round(med("raw_cpu_s_per_image"), 4),
        # Wall-clock-free view: the model's CPU per image / the server's (all its threads).
        "cpu_ratio_raw_over_server": round(med("cpu_ratio"), 3),
        # The httpx client shares the machine's cores with the server.
        "client_cpu_s_per_request": round(med("client_cpu_s_per_request"), 4),
        "rss_after": server.rss(),
        "loadavg": loadavg(),
    }
    if stages:
        out["server_timings"] = {k: summarize_s(v) for k, v in stages.items()}
    return out


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.artifacts import load_model_meta
    from app.metrics import Metrics
    from app.runtime import Runtime

    sets = parse_sets(args.set)
    photos_dir = args.photos or default_photos_dir()
    photos = load_photos(photos_dir, args.photos_limit)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        model_dir = args.model_dir
        if args.scales:
            model_dir = artifact_with_scales(model_dir, args.scales, work)
        meta = load_model_meta(model_dir)
        prep = meta.preprocessing
        settings = settings_for(work / "inproc", model_dir, sets)
        result: dict[str, Any] = {
            "model": {
                "name": meta.name,
                "precision": meta.precision,
                "depth": meta.depth,
                "max_side": prep.max_side,
                "scales": list(prep.scales),
            },
            "photos": {
                "dir": os.path.relpath(photos_dir, REPO),
                "count": len(photos),
                "raw_subset": min(args.raw_images, len(photos)),
            },
            "settings": {
                "inference": settings.inference.model_dump(mode="json"),
                "intra_op_threads": settings.resolved_intra_op_threads(),
                "decode_threads": settings.resolved_decode_threads(),
                "overrides": sets,
            },
        }
        blobs = [b for _, b in photos]
        subset = blobs[: min(args.raw_images, len(blobs))]
        result["preprocess_cpu_ms_per_image"] = preprocess_cost(blobs, settings, prep)
        tensors = prepare_tensors(subset, settings, prep)
        raw = RawOrt(model_dir / meta.onnx_file, settings)
        result["raw_providers"] = raw.providers
        log(f"embed: warming raw onnxruntime on {len(tensors)} images ...")
        raw.per_image(tensors)  # first runs per shape grow the arenas: not measured

        # 1 + 2: raw and embedder, interleaved.
        log("embed: starting the in-process runtime ...")
        runtime = Runtime.start(settings, Metrics())
        try:
            runtime.embedder.warmup()
            for data in subset:  # the photos' shapes, as raw had
                runtime.embedder.embed_bytes_sync(data)
            rounds: list[dict[str, Any]] = []
            for r in range(args.rounds):
                raw_r = raw_measure(raw, tensors)
                emb = [
                    embedder_measure(runtime, subset, _requests(c, args, len(subset)), c)
                    for c in concurrencies
                ]
                rounds.append({"raw": raw_r, "embedder": emb})
                log(
                    f"embed: round {r + 1}/{args.rounds}: raw {raw_r['images_per_s']:.2f} img/s, "
                    f"embedder {[e['images_per_s'] for e in emb]} img/s"
                )
        finally:
            runtime.close()
        result["rounds"] = rounds
        result["raw"] = _median_raw([r["raw"] for r in rounds])
        result["embedder"] = []
        for i in range(len(concurrencies)):
            per = [r["embedder"][i] for r in rounds]
            ratios = [
                p["images_per_s"] / r["raw"]["images_per_s"]
                for p, r in zip(per, rounds, strict=True)
            ]
            best = per[int(np.argsort([p["images_per_s"] for p in per])[len(per) // 2])]
            cpu_ratios = [
                r["raw"]["cpu_s_per_image"] / p["cpu_s_per_image"]
                for p, r in zip(per, rounds, strict=True)
            ]
            result["embedder"].append(
                {
                    **best,
                    "ratio_to_raw": round(float(np.median(ratios)), 3),
                    "cpu_ratio_raw_over_embedder": round(float(np.median(cpu_ratios)), 3),
                }
            )

        # 3: HTTP.
        if args.http:
            server = Server(server_env(work / "server", model_dir, sets), work / "server.log")
            try:
                ready_s = server.wait_ready(args.ready_timeout)
                idle = server.rss()
                log(
                    f"embed: server ready in {ready_s:.1f}s (RSS {idle['rss_mib']} MiB); "
                    "warming it on the photos ..."
                )
                asyncio.run(
                    _http_block(
                        server.base, "search", photos[: len(subset)], len(subset), 1, "warm"
                    )
                )
                http_rows = []
                for endpoint in args.endpoints.split(","):
                    for c in concurrencies:
                        row = http_measure(
                            server,
                            endpoint,
                            photos,
                            _requests(c, args, len(photos)),
                            c,
                            raw,
                            tensors,
                            args.http_repeats,
                        )
                        http_rows.append(row)
                        log(
                            f"embed: {row['endpoint']} c={c}: {row['images_per_s']:.2f} img/s "
                            f"(raw {row['raw_images_per_s']:.2f}; per block "
                            f"{row['ratio_per_block']}), p50 {row['latency']['p50_ms']:.0f} ms"
                        )
                result["http"] = {
                    "ready_s": round(ready_s, 2),
                    "rss_idle": idle,
                    "rss_after": server.rss(),
                    "rows": http_rows,
                }
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _requests(concurrency: int, args: argparse.Namespace, n_photos: int) -> int:
    if args.requests > 0:
        return max(args.requests, concurrency)
    return int(min(max(3 * concurrency, 12), 64))


def _median_raw(raws: list[dict[str, Any]]) -> dict[str, Any]:
    order = np.argsort([r["images_per_s"] for r in raws])
    mid = raws[int(order[len(order) // 2])]
    return {**mid, "per_round_images_per_s": [r["images_per_s"] for r in raws]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--photos", type=Path, help="folder of JPEGs (default ../shared/data/photos)")
    p.add_argument("--photos-limit", type=int, default=0, help="0 = all")
    p.add_argument(
        "--raw-images",
        type=int,
        default=12,
        help="photos in the raw / embedder rounds (the first N)",
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per concurrency level (0 = min(max(3c, 12), 64))",
    )
    p.add_argument("--endpoints", default="index,search")
    p.add_argument(
        "--http-repeats",
        type=int,
        default=2,
        help="blocks per HTTP row, each between two raw measurements",
    )
    p.add_argument("--no-http", dest="http", action="store_false")
    p.add_argument(
        "--scales",
        type=lambda s: tuple(float(v) for v in s.split(",")),
        help="override the artifact's scales, e.g. 1.0 (one scale at max_side)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GROUP.FIELD=VALUE",
        help="settings override for the runtime and the server, e.g. "
        "inference.jpeg_draft=true (repeatable)",
    )
    p.add_argument("--ready-timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
