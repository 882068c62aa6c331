"""Photos through the service's own preprocessing: inputs for BatchNorm statistics and for
int8 activation ranges, at the artifact's scales."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from app.artifacts import Preprocessing
from app.inference.preprocess import IMAGE_SUFFIXES, decode_image, prepare_image

# A BN in train mode needs > 1 value per channel: f4 is ceil(h/32) x ceil(w/32) for one image.
MIN_CALIB_SIDE = 33
MAX_PIXELS = 100_000_000


def _photos(folder: Path, flag: str) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"{flag}: no images in {folder}")
    return paths


def calibration_batches(folder: Path, prep: Preprocessing, limit: int) -> Iterator[torch.Tensor]:
    """[1,3,h,w] inputs made by the service's own preprocessing, one per (image, scale)."""
    paths = _photos(folder, "--calibrate-bn")
    for path in paths[:limit] if limit > 0 else paths:
        for planes in prepare_image(decode_image(path.read_bytes(), MAX_PIXELS), prep):
            if max(planes.shape[1:]) >= MIN_CALIB_SIDE:
                yield torch.from_numpy(planes)[None]


def int8_calibration_inputs(folder: Path, prep: Preprocessing, limit: int) -> list[np.ndarray]:
    """[3,h,w] float32 inputs for int8 ranges: the service's preprocessing, every scale."""
    paths = _photos(folder, "--int8")
    out: list[np.ndarray] = []
    for path in paths[:limit] if limit > 0 else paths:
        out.extend(prepare_image(decode_image(path.read_bytes(), MAX_PIXELS), prep))
    return out
