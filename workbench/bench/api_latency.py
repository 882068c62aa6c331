"""Client-side latency of the API's requests, one at a time (httpx over loopback, keep-alive),
p50 / p99 in ms: the workload workbench/bench/milvus_api.py runs on each backend.

Writes go through the `writer` URL and reads through the `reader` URL: two replicas of one
store, or one process given twice. `measure` returns one summary per key:
  add_photo_with_inference  POST /index, one photo per request (writer)
  by_id                     POST /search/by-id, top_k 10, cycling over the stored ids
  vector                    POST /search/vector with stored photos' descriptors
  get_item                  GET /items/{id}
  image_minus_embed         POST /search with a photo, minus the embedding the response
                            reports (`timings_ms.embed`); image_total: the whole request
  add_vector                POST /index/vectors of one new item (writer)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from workbench.bench.common import summarize_s

# Image searches discarded before the timed ones (the first pay for warm-up).
IMAGE_WARMUP = 3


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


def index_photos(writer: httpx.Client, photos: list[Path], ids: list[str]) -> dict[str, Any]:
    """POST /index of each photo under its id, one per request; every one must be a 201."""
    add = []
    for item_id, photo in zip(ids, photos, strict=True):
        t = time.perf_counter()
        r = writer.post(
            "/index",
            files={"files": (photo.name, photo.read_bytes(), "image/jpeg")},
            data={"ids": item_id},
        )
        add.append(time.perf_counter() - t)
        assert r.status_code == 201, r.text
    return summarize_s(add)


def image_search(reader: httpx.Client, photos: list[Path], n: int) -> dict[str, Any]:
    """POST /search with the photos in turn, n timed requests: the whole request and the
    request less the embedding time the response reports."""
    blobs = [p.read_bytes() for p in photos]
    search_only, totals = [], []
    for i in range(n + IMAGE_WARMUP):
        blob = blobs[i % len(blobs)]
        t = time.perf_counter()
        r = reader.post(
            "/search", files={"file": ("q.jpg", blob, "image/jpeg")}, data={"top_k": "10"}
        )
        elapsed = time.perf_counter() - t
        r.raise_for_status()
        if i >= IMAGE_WARMUP:
            totals.append(elapsed)
            search_only.append(elapsed - r.json()["timings_ms"]["embed"] / 1e3)
    return {"image_minus_embed": summarize_s(search_only), "image_total": summarize_s(totals)}


def measure(
    writer: str, reader: str, photos: list[Path], requests: int, image_requests: int
) -> dict[str, Any]:
    """The photos indexed as photo/<stem> through `writer`, then `requests` timed requests of
    each kind (min(requests, image_requests) image searches, min(requests, 100) vector adds)."""
    out: dict[str, Any] = {}
    ids = [f"photo/{p.stem}" for p in photos]
    with (
        httpx.Client(base_url=writer, timeout=120) as a,
        httpx.Client(base_url=reader, timeout=120) as b,
    ):
        out["add_photo_with_inference"] = index_photos(a, photos, ids)
        # Read-your-writes across replicas: the last photo through B, right after A's 201.
        assert b.get(f"/items/{ids[-1]}").status_code == 200
        vectors = [
            b.get(f"/items/{i}", params={"include_vector": "true"}).json()["vector"] for i in ids
        ]
        n = requests
        out["by_id"] = timed(
            lambda i: b.post("/search/by-id", json={"id": ids[i % len(ids)], "top_k": 10}), n
        )
        out["vector"] = timed(
            lambda i: b.post("/search/vector", json={"vector": vectors[i % len(ids)], "top_k": 10}),
            n,
        )
        out["get_item"] = timed(lambda i: b.get(f"/items/{ids[i % len(ids)]}"), n)
        out.update(image_search(b, photos, min(n, image_requests)))
        # Random new vectors [n + 5, D], row i for request i.
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
