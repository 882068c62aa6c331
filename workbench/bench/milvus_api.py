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
The requests are workbench/bench/api_latency.py's; the API processes are started by
workbench/servers/service.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.bench.api_latency import measure
from workbench.bench.common import log, machine_info
from workbench.servers.milvus_server import LocalMilvus
from workbench.servers.service import running, server_env

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos"
MODEL_DIR = REPO / "index_data" / "model"


@contextlib.contextmanager
def api_process(workdir: Path, name: str, sets: dict[str, str]) -> Iterator[str]:
    """`python -m app` with only these settings (`sets`: "group.field" -> value, data under
    workdir/name, log in workdir/name.log); yields its URL once ready."""
    env = server_env(workdir / name, MODEL_DIR, sets)
    env["SIMSEARCH_ACCESS_LOG"] = "false"
    with running(
        env,
        workdir / f"{name}.log",
        ready_timeout=180,
        stop_grace=60,
        launcher="app",
        inherit_settings=False,
    ) as server:
        yield server.base


def milvus_modes(
    work: Path, uri: str, photos: list[Path], args: argparse.Namespace
) -> dict[str, Any]:
    """Per strong_wait mode: replicas A and B on one fresh collection at `uri`, measured."""
    out: dict[str, Any] = {}
    for mode in args.strong_wait.split(","):
        milvus = {
            "store.backend": "milvus",
            "store.milvus.uri": uri,
            "store.milvus.collection": f"bench_api_{mode}_{os.getpid()}",
            "store.milvus.strong_wait": mode,
        }
        key = f"milvus_strong_wait_{mode}"
        with (
            api_process(work, f"{mode}-a", milvus) as a,
            api_process(work, f"{mode}-b", milvus) as b,
        ):
            out[key] = measure(a, b, photos, args.requests, args.image_requests)
        log(f"milvus, strong_wait {mode}: {out[key]}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
            result.update(milvus_modes(work, uri, photos, args))
        if not args.skip_faiss:
            with api_process(work, "faiss", {}) as url:
                result["faiss"] = measure(url, url, photos, args.requests, args.image_requests)
            log(f"faiss: {result['faiss']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
