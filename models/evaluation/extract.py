"""Descriptor extraction for retrieval evaluation: the loop, a torch runner and a feature cache.

No image decoding and no preprocessing numbers live here: `workbench/evaluate.py` injects the
service's own preprocessing (`app.inference.preprocess`) and runner (onnxruntime or torch), so
what is evaluated is what is served, while `models` stays free of `app` imports
(docs/ARCHITECTURE.md 1).

The extraction reproduces the official DOLG test path (docs/ALGORITHMS.md 1.7): per image, per scale
an input [3,h,w] -> network -> L2-normalised [D]; then the scales are pooled (mean, L2) by the
caller's pooling function. Query boxes are cropped with int() truncation (spec 5.4).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is needed for TorchRunner only: ONNX evaluation runs without it
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
# image file, optional query box (x1, y1, x2, y2 in original pixels) -> one [3,h,w] per scale
PrepareFn = Callable[[Path, BBox | None], list[np.ndarray]]
# the per-scale inputs of one image -> its [D] float32 unit descriptor
EmbedFn = Callable[[list[np.ndarray]], np.ndarray]

CACHE_FORMAT = "dolg-simsearch/features/v1"
T = TypeVar("T")


def clip_box(bbx: Sequence[float], width: int, height: int) -> BBox:
    """Clip a query box to the image, as numpy slicing does in the official crop.

    The official code crops `im[int(y1):int(y2), int(x1):int(x2)]`: an end past the border is
    silently clipped. The service's `crop_bbox` refuses such a box instead, so evaluation clips
    first (in original pixels) and logs it. Truncation itself is left to the crop.
    """
    x1, y1, x2, y2 = (float(v) for v in bbx)
    clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    if clipped != (x1, y1, x2, y2):
        logger.warning("query box %s clipped to the %dx%d image: %s", tuple(bbx), width,
                       height, clipped)
    return clipped


def _prefetched(
    items: Sequence[T], work: Callable[[T], Any], workers: int, depth: int
) -> Iterator[Any]:
    """work(item) for each item in order, computed `depth` ahead by `workers` threads.

    Decoding and resizing (numpy / Pillow, which release the GIL) overlap with inference in
    the calling thread; the bounded queue keeps at most `depth` prepared images in memory.
    """
    if workers <= 0:
        for item in items:
            yield work(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-prep") as pool:
        pending: deque[Future[Any]] = deque()
        position = 0
        try:
            while position < len(items) or pending:
                while position < len(items) and len(pending) < depth:
                    pending.append(pool.submit(work, items[position]))
                    position += 1
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def extract_features(
    paths: Sequence[Path],
    prepare: PrepareFn,
    embed: EmbedFn,
    bboxes: Sequence[BBox | None] | None = None,
    workers: int = 2,
    what: str = "images",
    log_every: int = 500,
) -> np.ndarray:
    """Descriptors [N, D] float32 of `paths` (row i for paths[i]).

    bboxes: per image a query box in original pixels, or None (database images).
    A failing image raises with its path in the message: a benchmark with a missing image
    would give numbers that cannot be compared with the published ones.
    """
    if bboxes is not None and len(bboxes) != len(paths):
        raise ValueError(f"{len(bboxes)} boxes for {len(paths)} images")
    jobs = list(zip(paths, bboxes if bboxes is not None else [None] * len(paths), strict=True))

    def work(job: tuple[Path, BBox | None]) -> list[np.ndarray]:
        path, box = job
        try:
            return prepare(path, box)
        except Exception as exc:
            raise RuntimeError(f"{what}: cannot prepare {path}: {exc}") from exc

    rows: list[np.ndarray] = []
    start = time.perf_counter()
    for i, inputs in enumerate(_prefetched(jobs, work, workers, depth=max(2, 2 * workers))):
        vector = np.asarray(embed(inputs), dtype=np.float32).reshape(-1)  # [D]
        if not np.all(np.isfinite(vector)):
            raise RuntimeError(f"{what}: non-finite descriptor for {jobs[i][0]}")
        rows.append(vector)
        done = i + 1
        if done % log_every == 0 or done == len(jobs):
            rate = done / max(time.perf_counter() - start, 1e-9)
            logger.info("%s: %d/%d extracted (%.1f images/s)", what, done, len(jobs), rate)
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


class TorchRunner:
    """Torch counterpart of the service's `OnnxSession.run`: [B,3,H,W] -> [B,D] unit rows.

    Computes l2n(model(x)), i.e. exactly what the exported graph computes (models.export
    `EmbeddingGraph`), in eval mode without gradients, on `device`.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        import torch

        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from models.layers.functional import l2n

        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a [B,3,H,W] batch, got shape {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            return l2n(self.model(x), dim=1).float().cpu().numpy()  # [B,D]


def list_digest(names: Sequence[str]) -> str:
    """sha256 of an ordered list of names (image stems, distractor files)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


class FeatureCache:
    """Descriptors on disk, keyed by everything that determines them.

    `<directory>/<name>-<key>.npy` holds [N, D] float32 rows; `<name>-<key>.json` describes
    them (model and its sha256, dataset, image list digest, scales and the rest of the
    preprocessing, query crop) and is written last, so a JSON file means a complete array.
    `key` is a digest of that description: change the model, a scale or the image list and
    the features are extracted again instead of silently reused. directory None = no cache.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    @staticmethod
    def key(description: Mapping[str, Any]) -> str:
        text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def paths(self, name: str, description: Mapping[str, Any]) -> tuple[Path, Path]:
        if self.directory is None:
            raise ValueError("no cache directory")
        stem = f"{name}-{self.key(description)}"
        return self.directory / f"{stem}.npy", self.directory / f"{stem}.json"

    def load(self, name: str, description: Mapping[str, Any], rows: int) -> np.ndarray | None:
        """The cached [rows, D] array, or None when absent or not matching `description`."""
        if self.directory is None:
            return None
        npy, meta = self.paths(name, description)
        if not (npy.is_file() and meta.is_file()):
            return None
        try:
            stored = json.loads(meta.read_text(encoding="utf-8"))
            features = np.load(npy, mmap_mode=None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cached features %s: %s", npy.name, exc)
            return None
        expected = json.loads(json.dumps(dict(description), sort_keys=True, default=str))
        if stored.get("description") != expected or features.shape[0] != rows:
            logger.warning("ignoring cached features %s: they describe other inputs", npy.name)
            return None
        logger.info("%s: %d cached descriptors from %s", name, rows, npy.name)
        return features.astype(np.float32, copy=False)

    def save(self, name: str, description: Mapping[str, Any], features: np.ndarray) -> Path:
        """Write atomically (temp files, os.replace; the JSON last); returns the .npy path."""
        if self.directory is None:
            raise ValueError("no cache directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        npy, meta = self.paths(name, description)
        payload = {
            "format": CACHE_FORMAT,
            "name": name,
            "key": self.key(description),
            "rows": int(features.shape[0]),
            "dim": int(features.shape[1]) if features.ndim == 2 else 0,
            "dtype": "float32",
            "description": json.loads(json.dumps(dict(description), sort_keys=True,
                                                 default=str)),
        }
        for path, write in (
            (npy, lambda f: np.save(f, np.asarray(features, dtype=np.float32))),
            (meta, lambda f: f.write(json.dumps(payload, indent=2, sort_keys=True).encode())),
        ):
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                with tmp.open("wb") as handle:
                    write(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return npy

    def get_or_compute(
        self,
        name: str,
        description: Mapping[str, Any],
        rows: int,
        compute: Callable[[], np.ndarray],
    ) -> tuple[np.ndarray, bool]:
        """(features, came_from_cache). Computes and stores them when not cached."""
        cached = self.load(name, description, rows)
        if cached is not None:
            return cached, True
        features = compute()
        if features.shape[0] != rows:
            raise RuntimeError(f"{name}: extracted {features.shape[0]} rows, expected {rows}")
        if self.directory is not None:
            logger.info("%s: cached %d descriptors in %s", name, rows,
                        self.save(name, description, features).name)
        return features, False
