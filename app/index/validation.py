"""Input checks every `VectorStore` backend applies the same way (-> InvalidVectors, a 422)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.index.store import InvalidVectors


def as_matrix(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    """[n, dim] or [dim] real finite numbers -> C-contiguous float32 [n, dim]."""
    x = np.asarray(vectors)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise InvalidVectors(f"{what} must have shape [n, {dim}], got {list(np.shape(vectors))}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InvalidVectors(f"{what} must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidVectors(f"{what} contain NaN or infinite values")
    return x


def to_float16(x: np.ndarray) -> np.ndarray:
    """float32 [n, D] -> float16 [n, D], what every backend stores and scores with."""
    with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
        x16 = x.astype(np.float16)
    if not np.isfinite(x16).all():
        raise InvalidVectors("vectors exceed the float16 range; pass L2-normalised vectors")
    return x16


def check_ids(ids: Sequence[str]) -> list[str]:
    """Non-empty strings, unique within the batch: which duplicate should win is the
    caller's decision, not the store's."""
    ids = list(ids)
    for item_id in ids:
        if not isinstance(item_id, str) or not item_id:
            raise InvalidVectors(f"ids must be non-empty strings, got {item_id!r}")
    if len(set(ids)) != len(ids):
        dups = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise InvalidVectors(f"duplicate ids in one batch: {dups[:5]}")
    return ids


def metadata_json(metadata: Sequence[dict[str, Any] | None] | None, n: int) -> list[str | None]:
    """One JSON object text (or None) per item."""
    if metadata is None:
        return [None] * n
    if len(metadata) != n:
        raise InvalidVectors(f"got {len(metadata)} metadata entries for {n} ids")
    out: list[str | None] = []
    for i, meta in enumerate(metadata):
        if meta is None:
            out.append(None)
            continue
        if not isinstance(meta, dict):
            raise InvalidVectors(f"metadata[{i}] must be a JSON object or null")
        try:
            out.append(json.dumps(meta, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidVectors(f"metadata[{i}] is not JSON-serialisable: {exc}") from exc
    return out


def check_thumbnails(
    thumbnails: Sequence[bytes | None] | None, n: int
) -> list[bytes | None] | None:
    if thumbnails is None:
        return None
    if len(thumbnails) != n:
        raise InvalidVectors(f"got {len(thumbnails)} thumbnails for {n} ids")
    out: list[bytes | None] = []
    for i, data in enumerate(thumbnails):
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidVectors(f"thumbnails[{i}] must be bytes or null")
        out.append(None if data is None else bytes(data))
    return out


def check_search_args(k: int, nprobe: int | None, candidate_factor: int) -> None:
    if k < 1:
        raise InvalidVectors(f"k must be >= 1, got {k}")
    if candidate_factor < 1:
        raise InvalidVectors(f"candidate_factor must be >= 1, got {candidate_factor}")
    if nprobe is not None and nprobe < 1:
        raise InvalidVectors(f"nprobe must be >= 1, got {nprobe}")


def check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise InvalidVectors(f"limit must be a positive integer, got {limit!r}")
