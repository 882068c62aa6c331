"""Client-side helpers shared by the reliability tests: vectors, small images, checks."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image

DIM = 32  # the tiny test model's embedding_dim

T = TypeVar("T")
R = TypeVar("R")


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """[n, dim] float32, L2-normalised; random Gaussian directions are far apart in 32-d."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def small_image(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A smooth random image (a 4x3 colour grid upscaled): distinct seeds embed differently."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def item_url(item_id: str) -> str:
    return "/items/" + quote(item_id, safe="")


def top_hit(client: httpx.Client, vector: np.ndarray, **extra: object) -> dict | None:
    """The best hit for a vector query, or None when the result is empty."""
    body = {"vector": [float(v) for v in vector], "top_k": 1, **extra}
    resp = client.post("/search/vector", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    return results[0] if results else None


def top_hit_for_image(client: httpx.Client, image: bytes) -> dict | None:
    resp = client.post(
        "/search", files={"file": ("q.png", image, "image/png")}, data={"top_k": "1"}
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    return results[0] if results else None


def parallel(
    url: str, fn: Callable[[httpx.Client, T], R], items: Iterable[T], workers: int = 4
) -> list[R]:
    """[fn(client, item) for item in items], run on `workers` threads with one HTTP client
    per thread; results in the order of `items`."""
    items = list(items)
    if not items:
        return []
    results: list[R | None] = [None] * len(items)

    def run(start: int) -> None:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            for i in range(start, len(items), workers):
                results[i] = fn(client, items[i])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, range(workers)))
    return results  # type: ignore[return-value]
