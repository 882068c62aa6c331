"""Descriptors of a revisitop dataset through the service's own preprocessing: the official
DOLG test path (docs/ALGORITHMS.md 1.7), cached on disk by what determines them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts import Preprocessing
from app.inference.preprocess import decode_image, pool_scales, prepare_image
from models.evaluation.extract import (
    BBox,
    FeatureCache,
    clip_box,
    extract_features,
    list_digest,
)
from models.evaluation.revisitop import RevisitopDataset
from workbench.evaluation.backends import Backend, RunFn

# Decoded-pixel limit for benchmark images (the service's default is 40 Mpx; +1M distractors
# and user datasets may hold larger photos, and this is a trusted, offline input).
MAX_PIXELS = 250_000_000


def make_prepare(
    prep: Preprocessing, cap: bool = True
) -> Callable[[Path, BBox | None], list[np.ndarray]]:
    """Image file (+ query box) -> per-scale network inputs, with the service's functions.

    The chain of `Embedder.prepare_image`: decode (RGB, EXIF-oriented) -> long-side cap ->
    crop the box (given in original pixels, scaled by the cap factor, int() truncation) ->
    multi-scale inputs. Without a cap (ROxf/RPar never trigger it, or --no-cap) the crop is
    exactly the official `im[int(y1):int(y2), int(x1):int(x2)]` of the original image.
    """

    def prepare(path: Path, bbox: BBox | None) -> list[np.ndarray]:
        img = decode_image(path.read_bytes(), MAX_PIXELS)  # [H,W,3] uint8 RGB
        height, width = img.shape[:2]
        box = None if bbox is None else clip_box(bbox, width, height)
        return prepare_image(img, prep, box, cap=cap)  # S x [3,h_s,w_s]

    return prepare


def make_embed(run: RunFn, prep: Preprocessing) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Per-scale inputs -> [D] unit descriptor: one run per scale (sizes differ), then the
    service's pooling (per-scale L2, mean or max, L2)."""

    def embed(inputs: list[np.ndarray]) -> np.ndarray:
        vectors = np.concatenate([run(x[None]) for x in inputs])  # [S,D]
        return pool_scales(vectors, prep)

    return embed


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_all(
    dataset: RevisitopDataset,
    backend: Backend,
    cache_dir: Path | None = None,
    cap: bool = True,
    query_crop: bool = True,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(db [N(+distractors), D], queries [Q, D], extraction info), through the cache."""
    cache = FeatureCache(cache_dir)
    prepare = make_prepare(backend.prep, cap=cap)
    embed = make_embed(backend.run, backend.prep)
    common = {
        "model": backend.identity,
        "preprocessing": backend.prep.model_dump(mode="json"),
        "long_side_cap": cap,
    }
    crop = "int-truncation" if query_crop else "none"
    parts: dict[str, tuple[dict[str, Any], list[Path], list[BBox | None] | None]] = {
        "db": (
            {
                **common,
                "dataset": dataset.name,
                "part": "db",
                "images": {"count": dataset.n_db, "sha256": list_digest(dataset.imlist)},
            },
            dataset.db_paths()[: dataset.n_db],
            None,
        ),
        "queries": (
            {
                **common,
                "dataset": dataset.name,
                "part": "queries",
                "query_crop": crop,
                "images": {"count": dataset.n_queries, "sha256": list_digest(dataset.qimlist)},
                "gnd_sha256": _file_sha256(dataset.gnd_path),
            },
            dataset.query_paths(),
            list(dataset.query_bboxes()) if query_crop else None,
        ),
    }
    if dataset.n_distractors:
        # Keyed without the dataset: ROxf and RPar share the same +1M descriptors.
        parts["distractors"] = (
            {
                **common,
                "part": "distractors",
                "images": {
                    "count": dataset.n_distractors,
                    "sha256": list_digest(dataset.distractor_list),
                },
            },
            dataset.db_paths()[dataset.n_db :],
            None,
        )
    features: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"cached": {}, "seconds": {}, "cache_keys": {}}
    for part, (description, paths, boxes) in parts.items():
        name = f"{dataset.name}-{part}" if part != "distractors" else "revisitop1m"
        t0 = time.perf_counter()

        def compute(
            paths: list[Path] = paths, boxes: list[BBox | None] | None = boxes, part: str = part
        ) -> np.ndarray:
            return extract_features(paths, prepare, embed, boxes, workers=workers, what=part)

        features[part], cached = cache.get_or_compute(name, description, len(paths), compute)
        info["cached"][part] = cached
        info["seconds"][part] = round(time.perf_counter() - t0, 2)
        info["cache_keys"][part] = FeatureCache.key(description)
    db = features["db"]
    if "distractors" in features:
        db = np.concatenate([db, features["distractors"]])
    info.update(
        {
            "preprocessing": backend.prep.model_dump(mode="json"),
            "long_side_cap": cap,
            "query_crop": crop,
            "dim": int(db.shape[1]),
        }
    )
    return db, features["queries"], info
