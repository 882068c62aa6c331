#!/usr/bin/env python
"""Search latency through the API on the Milvus backend, one request at a time, next to the
FAISS backend in the same run.

    python -m workbench.bench.milvus_api [--milvus-uri URI] [--time-tick-ms 50]
        [--strong-wait write,read] [--requests 200] [--photos DIR]

Prints one JSON object (last stdout line). Without --milvus-uri it starts the real Milvus
2.3.5 server of the `milvus` wheel (workbench/servers/milvus_server.py) with `--time-tick-ms`.

For each `store.milvus.strong_wait` mode two API processes (`python -m app`, replicas A and B) share
one fresh collection; the FAISS backend runs as one process. The photos are indexed through A
(POST /index, one photo per request); then, through B:
  by_id       POST /search/by-id, top_k 10, cycling over the stored ids
  vector      POST /search/vector with stored photos' descriptors
              (GET /items/{id}?include_vector=true)
  image       POST /search with a photo, minus the embedding the response reports
              (`timings_ms.embed`): the search part of an image search
  add_vector  POST /index/vectors of one new item through A (the add path minus inference)
  get_item    GET /items/{id}
Every figure is the client-side latency (httpx over loopback, keep-alive), p50 / p99 in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from workbench.bench.common import log, machine_info, summarize_s
from workbench.servers.milvus_server import LocalMilvus, free_port

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos"


@contextlib.contextmanager
def api_process(workdir: Path, name: str, settings: dict[str, str]) -> Iterator[str]:
    """`python -m app` on a free loopback port with SIMSEARCH_* `settings`; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMSEARCH_")}
    env.update(
        SIMSEARCH_HOST="127.0.0.1",
        SIMSEARCH_PORT=str(port),
        SIMSEARCH_DATA_DIR=str(workdir / name),
        SIMSEARCH_MODEL_DIR=str(REPO / "index_data" / "model"),
        SIMSEARCH_ACCESS_LOG="false",
        SIMSEARCH_LOG_LEVEL="WARNING",
    )
    env.update({f"SIMSEARCH_{k.upper()}": v for k, v in settings.items()})
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def timed(fn: Callable[[int], httpx.Response], n: int, warmup: int = 5) -> dict[str, Any]:
    """fn(i) -> response, n times after `warmup` calls; every response must be 2xx."""
    for i in range(warmup):
        fn(i).raise_for_status()
    samples = []
    for i in range(n):
        t = time.perf_counter()
        response = fn(i)
        samples.append(time.perf_counter() - t)
        response.raise_for_status()
    return summarize_s(samples)


def measure(
    writer: str, reader: str, photos: list[Path], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ids = [f"photo/{p.stem}" for p in photos]
    with (
        httpx.Client(base_url=writer, timeout=120) as a,
        httpx.Client(base_url=reader, timeout=120) as b,
    ):
        add = []
        for item_id, photo in zip(ids, photos, strict=True):
            t = time.perf_counter()
            r = a.post(
                "/index",
                files={"files": (photo.name, photo.read_bytes(), "image/jpeg")},
                data={"ids": item_id},
            )
            add.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
        out["add_photo_with_inference"] = summarize_s(add)
        # Read-your-writes across replicas: the last photo through B, right after A's 201.
        assert b.get(f"/items/{ids[-1]}").status_code == 200
        vectors = [
            b.get(f"/items/{i}", params={"include_vector": "true"}).json()["vector"] for i in ids
        ]
        n = args.requests
        out["by_id"] = timed(
            lambda i: b.post("/search/by-id", json={"id": ids[i % len(ids)], "top_k": 10}), n
        )
        out["vector"] = timed(
            lambda i: b.post("/search/vector", json={"vector": vectors[i % len(ids)], "top_k": 10}),
            n,
        )
        out["get_item"] = timed(lambda i: b.get(f"/items/{ids[i % len(ids)]}"), n)
        # Image search minus inference: the client's latency less the embedding it reports.
        blobs = [p.read_bytes() for p in photos]
        search_only, totals = [], []
        for i in range(min(n, args.image_requests) + 3):
            blob = blobs[i % len(blobs)]
            t = time.perf_counter()
            r = b.post(
                "/search", files={"file": ("q.jpg", blob, "image/jpeg")}, data={"top_k": "10"}
            )
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            if i >= 3:
                totals.append(elapsed)
                search_only.append(elapsed - r.json()["timings_ms"]["embed"] / 1e3)
        out["image_minus_embed"] = summarize_s(search_only)
        out["image_total"] = summarize_s(totals)
        rng = np.random.default_rng(0)
        new = rng.standard_normal((n + 5, len(vectors[0]))).astype(np.float32)
        out["add_vector"] = timed(
            lambda i: a.post(
                "/index/vectors",
                json={"items": [{"id": f"new/{i}", "vector": new[i].tolist()}]},
            ),
            min(n, 100),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument(
        "--time-tick-ms",
        type=int,
        default=None,
        help="proxy.timeTickInterval of the started server (default: milvus_server.py's)",
    )
    parser.add_argument("--strong-wait", default="write,read")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--image-requests", type=int, default=60)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--skip-faiss", action="store_true")
    args = parser.parse_args(argv)
    folder = args.photos if args.photos.is_dir() else REPO / "index_data" / "samples"
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    result: dict[str, Any] = {"photos": len(photos), "machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="bench-milvus-api-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            uri = args.milvus_uri
            if uri is None:
                server = LocalMilvus(work / "milvus")
                if args.time_tick_ms is not None:
                    server.time_tick_ms = args.time_tick_ms
                server.start(timeout=300)
                stack.callback(server.stop)
                uri = server.uri
                result["time_tick_ms"] = server.time_tick_ms
            for mode in args.strong_wait.split(","):
                milvus = {
                    "store__backend": "milvus",
                    "store__milvus__uri": uri,
                    "store__milvus__collection": f"bench_api_{mode}_{os.getpid()}",
                    "store__milvus__strong_wait": mode,
                }
                with (
                    api_process(work, f"{mode}-a", milvus) as a,
                    api_process(work, f"{mode}-b", milvus) as b,
                ):
                    result[f"milvus_strong_wait_{mode}"] = measure(a, b, photos, args)
                log(f"milvus, strong_wait {mode}: {result[f'milvus_strong_wait_{mode}']}")
        if not args.skip_faiss:
            with api_process(work, "faiss", {}) as url:
                result["faiss"] = measure(url, url, photos, args)
            log(f"faiss: {result['faiss']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
