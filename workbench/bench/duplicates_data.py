"""The duplicates benchmark's data: a store's worth of synthetic vectors with near-copies among
them, and thumbnails of real photos to store beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.bench.synthetic import clustered_unit_vectors, perturbed_queries


def near_copies(db: np.ndarray, n: int, seed: int) -> np.ndarray:
    """[n, d]: `n` distinct rows of `db` plus noise of norm ~0.25, cosine ~0.97 to their
    source (the synthetic queries' generator at that noise)."""
    return perturbed_queries(db, n, seed + 6, tau=0.25)


def vectors_with_copies(
    n: int, copies: int, dim: int, seed: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, vectors [n, dim], originals [n - copies, dim] float32): gaussian blobs on the
    sphere ("v<i>") followed by near-copies of random ones ("c<i>")."""
    base = clustered_unit_vectors(n - copies, dim, seed).astype(np.float32)
    dup = near_copies(base, copies, seed)
    ids = [f"v{i}" for i in range(len(base))] + [f"c{i}" for i in range(copies)]
    return ids, np.concatenate([base, dup]), base


def photo_thumbnails(photos: Path) -> list[bytes]:
    """The service's thumbnails (default settings) of the .jpg photos in `photos`."""
    from app.config import ThumbnailSettings
    from app.thumbnails import make_thumbnail

    out = []
    for p in sorted(photos.glob("*.jpg")):
        thumb = make_thumbnail(p.read_bytes(), ThumbnailSettings(), 1 << 30)
        if thumb is not None:
            out.append(thumb)
    if not out:
        raise SystemExit(f"{photos}: no .jpg photos to make thumbnails from")
    return out
