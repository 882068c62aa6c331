"""What the embedding benchmarks feed the service: photos from disk, an artifact at other
scales, and the service's exact model inputs for them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import REPO

IMAGE_SUFFIXES = {".jpg", ".jpeg"}
DEFAULT_PHOTOS = ("../shared/data/photos", "index_data/samples")


def default_photos_dir() -> Path:
    for candidate in DEFAULT_PHOTOS:
        path = (REPO / candidate).resolve()
        if path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            return path
    raise SystemExit(f"no photos found in {DEFAULT_PHOTOS}; pass --photos DIR")


def load_photos(folder: Path, limit: int) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit > 0:
        paths = paths[:limit]
    if not paths:
        raise SystemExit(f"no JPEGs in {folder}")
    return [(p.name, p.read_bytes()) for p in paths]


def artifact_with_scales(model_dir: Path, scales: Sequence[float], workdir: Path) -> Path:
    """A copy of the artifact whose meta asks for other scales (the graph is the same file)."""
    from app.artifacts import MODEL_FILE, load_model_meta, save_model_meta

    meta = load_model_meta(model_dir)
    out = workdir / ("model-scales-" + "_".join(f"{s:g}" for s in scales))
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODEL_FILE
    if not target.exists():
        try:
            os.link(model_dir / meta.onnx_file, target)
        except OSError:
            shutil.copyfile(model_dir / meta.onnx_file, target)
    prep = meta.preprocessing.model_copy(update={"scales": tuple(scales)})
    save_model_meta(meta.model_copy(update={"preprocessing": prep}), out)
    return out


def prepare_tensors(blobs: list[bytes], settings: Any, prep: Any) -> list[list[np.ndarray]]:
    """The service's exact model inputs: its pixel chain (app/inference/working.py)."""
    from app.inference.working import decode_working_image, model_inputs

    chain = settings.inference.pixel_chain
    chain = prep.pixel_chain if chain == "auto" else chain
    return [
        model_inputs(
            decode_working_image(
                data, prep, settings.limits.max_pixels, chain, settings.inference.jpeg_draft
            ),
            prep,
        )
        for data in blobs
    ]
