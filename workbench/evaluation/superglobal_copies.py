#!/usr/bin/env python
"""Does SuperGlobal re-ranking help or hurt copy search? Prints JSON.

    python -m workbench.evaluation.superglobal_copies --model-dir index_data/model \\
        --photos ../shared/data/photos [--m 10,30,100] [--k 1,3,9] [--beta 0.15]

Descriptors come from the service's embedder (the artifact's own preprocessing); the searches
are exact cosine rankings in numpy, re-ranked with the service's `superglobal_rerank`. Three
stores, each query's source known:
- A "small": the P originals; queries = their 15 edited copies (models/evaluation/
  near_duplicates.py, standard + hard). The store is smaller than M: top-M = everything.
- B "distractors": originals of 2/3 of the photos plus all 15 copies of the other third (dense
  clusters of near-identical distractors); queries = the copies of the indexed photos.
- C "several copies": originals plus 5 edited copies of each photo; queries = the other 10
  edits; every item of the same source is relevant (mAP and recall@1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.inference.preprocess import IMAGE_SUFFIXES
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.rerank import superglobal_rerank
from models.evaluation.near_duplicates import ALL_TRANSFORMS, transformed_queries


async def embed(model_dir: Path, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """-> originals [P,D], copies [P,T,D] (T = every transform)."""
    names = list(ALL_TRANSFORMS)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.start(Settings(data_dir=Path(tmp), model_dir=model_dir), Metrics())
        try:
            blobs = [p.read_bytes() for p in photos]
            originals = await runtime.service.embed_images(blobs)
            flat = [q for b in blobs for q in transformed_queries(b, names).values()]
            copies = await runtime.service.embed_images(flat)
        finally:
            runtime.close()
    return originals, copies.reshape(len(photos), len(names), -1)


def ranking(query: np.ndarray, db: np.ndarray, rerank: tuple[int, int, float] | None
            ) -> np.ndarray:
    """Row indices of db, best first; rerank = (M, K, beta) re-ranks the exact top-M."""
    order = np.argsort(-(db @ query), kind="stable")
    if rerank is None:
        return order
    m, k, beta = rerank
    head = order[:m]
    perm, _ = superglobal_rerank(query, db[head], k=k, beta=beta)
    return np.concatenate([head[perm], order[m:]])


def average_precision(relevant: np.ndarray) -> float:
    hits = np.flatnonzero(relevant)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))) if len(hits) else 0.0


def scenarios(originals: np.ndarray, copies: np.ndarray,
              rerank: tuple[int, int, float] | None) -> dict[str, float]:
    p, t, d = copies.shape
    ids = np.arange(p)
    out: dict[str, float] = {}
    out["A_small_recall_at_1"] = float(np.mean(
        [ranking(copies[i, j], originals, rerank)[0] == i for i in ids for j in range(t)]))
    held = ids % 3 == 0
    db_b = np.concatenate([originals[~held], copies[held].reshape(-1, d)])
    ids_b = np.concatenate([ids[~held], np.repeat(ids[held] + p, t)])  # distractors: no query
    out["B_distractors_recall_at_1"] = float(np.mean(
        [ids_b[ranking(copies[i, j], db_b, rerank)[0]] == i
         for i in ids[~held] for j in range(t)]))
    db_c = np.concatenate([originals, copies[:, :5].reshape(-1, d)])
    ids_c = np.concatenate([ids, np.repeat(ids, 5)])
    aps, r1 = [], []
    for i in ids:
        for j in range(5, t):
            rel = ids_c[ranking(copies[i, j], db_c, rerank)] == i
            aps.append(average_precision(rel))
            r1.append(bool(rel[0]))
    out["C_several_copies_map"] = float(np.mean(aps))
    out["C_several_copies_recall_at_1"] = float(np.mean(r1))
    out["store_sizes"] = {"A": p, "B": len(db_b), "C": len(db_c)}  # type: ignore[assignment]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("index_data/model"))
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--m", type=_ints, default=[10, 30, 100], help="SuperGlobal M values")
    parser.add_argument("--k", type=_ints, default=[1, 3, 9], help="SuperGlobal K values")
    parser.add_argument("--beta", type=_floats, default=[0.15], help="SuperGlobal beta values")
    args = parser.parse_args(argv)
    photos = sorted(p for p in args.photos.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES)
    originals, copies = asyncio.run(embed(args.model_dir, photos))
    results: dict[str, Any] = {"photos": len(photos), "none": scenarios(originals, copies, None)}
    for m in args.m:
        for k in args.k:
            for beta in args.beta:
                results[f"superglobal M={m} K={k} beta={beta}"] = scenarios(
                    originals, copies, (m, k, beta))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
