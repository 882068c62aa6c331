#!/usr/bin/env python
"""Evaluate model artifacts on a folder of photos through the service code; prints JSON.

    python -m workbench.evaluation.near_duplicates --photos ../shared/data/photos \\
        --model-dir index_data/model [--model-dir OTHER ...] [--transforms all] \\
        [--categories models/evaluation/photo_categories.tsv] [--threshold-folds 3] \\
        [--rerank none,superglobal] [--exclude-flip] [--pixel-chain official,fast]

Per artifact, in one run (so the figures compare on the same machine load):
- near-duplicate recall@1 per transform: every photo is indexed in a temporary store, each
  transformed copy (models/evaluation/near_duplicates.py; --transforms standard, hard or all)
  is searched with each --rerank mode;
- latency: one image at a time through the embedder (decode, preprocessing, every scale);
- with --categories: the rate at which the nearest other photo has the same category;
- with --query-photos (names, or a photo recipe's recipe.json: its held-out photos): only those
  photos' copies are queried and only they count in the same-category rate; every photo stays
  indexed (the others are distractors). For models trained on the rest.
- with --pixel-chain official,fast: each artifact once per pixel chain (the setting
  inference.pixel_chain; app/inference/working.py), index and queries through the same chain;
- with --threshold-folds F: the score-threshold study (models/evaluation/similarity.py): photo
  i is held out in fold i % F; copies of indexed photos against never-indexed photos and their
  copies, top-1 cosine computed exactly from the service's vectors.
- with --rescore-rows fp16,int8: the same near-duplicate, same-category and threshold figures
  with the stored rows kept at that precision (int8: FAISS's 8-bit scalar quantizer, ranges
  learned from every original and copy), exact scoring over all rows (no ANN: at this size a
  PCA/OPQ-projected ANN re-scored from the rows returns the same top-1), rerank none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config import InferenceSettings, Settings
from app.inference.preprocess import IMAGE_SUFFIXES
from app.metrics import Metrics
from app.runtime import Runtime
from models.evaluation.near_duplicates import (
    HARD_TRANSFORMS,
    TRANSFORMS,
    recall_at_1,
    transformed_queries,
)
from models.evaluation.similarity import nearest_other_rate, threshold_study

TRANSFORM_SETS = {"standard": list(TRANSFORMS), "hard": list(HARD_TRANSFORMS),
                  "all": [*TRANSFORMS, *HARD_TRANSFORMS]}


def read_categories(path: Path) -> dict[str, str]:
    """TSV with a `file<TAB>category` header; lines starting with # are comments."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    if not rows or rows[0][:2] != ["file", "category"]:
        raise SystemExit(f"{path}: expected a 'file<TAB>category' header")
    return {r[0]: r[1] for r in rows[1:]}


def read_query_photos(value: str) -> list[str]:
    """Comma list of file names, or a recipe.json whose `heldout_photos` are the queries."""
    if value.endswith(".json"):
        return list(json.loads(Path(value).read_text(encoding="utf-8"))["heldout_photos"])
    return [v.strip() for v in value.split(",") if v.strip()]


async def evaluate(model_dir: Path, photos: list[Path], transforms: list[str],
                   reranks: list[str], categories: dict[str, str] | None,
                   folds: int, query_photos: list[str] | None = None,
                   pixel_chain: str = "auto",
                   rescore_rows: list[str] | None = None) -> dict[str, Any]:
    names = [p.name for p in photos]
    queried = [i for i, n in enumerate(names) if query_photos is None or n in query_photos]
    blobs = [p.read_bytes() for p in photos]
    with tempfile.TemporaryDirectory() as tmp:
        inference = InferenceSettings.model_validate({"pixel_chain": pixel_chain})
        settings = Settings(data_dir=Path(tmp), model_dir=model_dir, inference=inference)
        runtime = Runtime.start(settings, Metrics())
        try:
            service = runtime.service
            latencies = []
            for blob in blobs:  # one at a time: what a single upload costs
                t0 = time.perf_counter()
                await service.embedder.embed_bytes(blob)
                latencies.append(1e3 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            originals = await service.embed_images(blobs)  # [P,D]
            index_s = time.perf_counter() - t0
            queries = [transformed_queries(b, transforms) for b in blobs]
            flat = [q[t] for q in queries for t in transforms]
            qvec = (await service.embed_images(flat)).reshape(len(photos), len(transforms), -1)
            await service.index_vectors(names, originals, [None] * len(photos))
            recall: dict[str, Any] = {}
            for mode in reranks:
                hits: dict[str, dict[str, str | None]] = {}
                for i in queried:
                    name = names[i]
                    hits[name] = {}
                    for j, t in enumerate(transforms):
                        out = await service.search_vector(qvec[i, j], top_k=1, rerank=mode)
                        hits[name][t] = out.hits[0].id if out.hits else None
                recall[mode] = {
                    "recall_at_1": {k: round(v, 4) for k, v in recall_at_1(hits).items()},
                    "misses": {s: [t for t, top in by.items() if top != s]
                               for s, by in hits.items() if any(top != s for top in by.values())},
                }
        finally:
            runtime.close()
    meta = runtime.meta
    result: dict[str, Any] = {
        "model": {"name": meta.name, "architecture": meta.architecture,
                  "backbone": meta.backbone, "source": meta.source.kind,
                  "dim": meta.embedding_dim, "scales": meta.preprocessing.scales,
                  "max_side": meta.preprocessing.max_side,
                  "pixel_chain": runtime.embedder.chain},
        "photos": len(photos), "queried_photos": len(queried), "transforms": transforms,
        "latency_ms_per_image": {"mean": round(statistics.fmean(latencies), 1),
                                 "median": round(statistics.median(latencies), 1)},
        "index_images_per_s": round(len(photos) / index_s, 2),
        "near_duplicates": recall,
    }
    if categories is not None:
        missing = [n for n in names if n not in categories]
        if missing:
            raise SystemExit(f"no category for {missing}")
        result["semantic_nearest_other"] = nearest_other_rate(
            originals, [categories[n] for n in names], queried)
    if folds >= 2:
        result["score_threshold"] = _threshold(originals, qvec, folds)
    if rescore_rows:
        result["rescore_rows"] = {
            kind: _rows_study(kind, originals, qvec, names, queried, transforms,
                              categories, folds)
            for kind in rescore_rows
        }
    return result


def stored_rows(kind: str, originals: np.ndarray, train: np.ndarray) -> np.ndarray:
    """[P,D] float32: the rows a store keeps at precision `kind` (fp16 or int8 SQ8)."""
    if kind == "fp16":
        return originals.astype(np.float16).astype(np.float32)
    if kind == "int8":
        import faiss

        sq = faiss.ScalarQuantizer(originals.shape[1], faiss.ScalarQuantizer.QT_8bit)
        sq.train(np.ascontiguousarray(train, dtype=np.float32))
        return sq.decode(sq.compute_codes(np.ascontiguousarray(originals, dtype=np.float32)))
    raise SystemExit(f"--rescore-rows: expected fp16 and/or int8, got {kind!r}")


def _rows_study(kind: str, originals: np.ndarray, qvec: np.ndarray, names: list[str],
                queried: list[int], transforms: list[str],
                categories: dict[str, str] | None, folds: int) -> dict[str, Any]:
    """Near-duplicate recall@1, same-category rate and threshold study over rows of `kind`."""
    train = np.concatenate([originals, qvec.reshape(-1, qvec.shape[-1])])
    rows = stored_rows(kind, originals, train)  # [P,D]
    hits = {names[i]: {t: names[int(np.argmax(rows @ qvec[i, j]))]
                       for j, t in enumerate(transforms)} for i in queried}
    out: dict[str, Any] = {
        "bytes_per_row": originals.shape[1] * (2 if kind == "fp16" else 1),
        "max_abs_score_error": round(float(np.abs(
            (rows - originals) @ qvec.reshape(-1, qvec.shape[-1]).T).max()), 5),
        "recall_at_1": {k: round(v, 4) for k, v in recall_at_1(hits).items()},
    }
    if categories is not None:
        # Neighbours scored from the stored rows, the photo itself as the (float) query.
        labels = [categories[n] for n in names]
        sims = originals @ rows.T  # [P,P]
        np.fill_diagonal(sims, -np.inf)
        best = sims.argmax(axis=1)
        out["semantic_nearest_other_rate"] = round(float(np.mean(
            [labels[int(best[i])] == labels[i] for i in queried])), 4)
    if folds >= 2:
        out["score_threshold"] = _threshold(originals, qvec, folds, db_rows=rows)
    return out


def _threshold(originals: np.ndarray, qvec: np.ndarray, folds: int,
               db_rows: np.ndarray | None = None) -> dict[str, object]:
    """originals [P,D], qvec [P,T,D] -> threshold study over `folds` held-out folds.
    `db_rows` [P,D]: the indexed rows as stored (default the originals)."""
    stored = originals if db_rows is None else db_rows
    n = originals.shape[0]
    pos, pos_ok, neg = [], [], []
    for f in range(folds):
        held = np.array([i % folds == f for i in range(n)])
        indexed = np.flatnonzero(~held)
        db = stored[indexed]  # [Pi,D]
        copies = qvec[indexed].reshape(-1, qvec.shape[-1])  # [Pi*T,D], source = row // T
        scores = copies @ db.T
        pos.append(scores.max(axis=1))
        pos_ok.append(scores.argmax(axis=1) == np.repeat(np.arange(len(indexed)), qvec.shape[1]))
        unindexed = np.concatenate([originals[held], qvec[held].reshape(-1, qvec.shape[-1])])
        neg.append((unindexed @ db.T).max(axis=1))
    return threshold_study(pos, pos_ok, neg)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, action="append",
                        help="artifact directory (repeatable; default index_data/model)")
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--transforms", choices=sorted(TRANSFORM_SETS), default="standard")
    parser.add_argument("--exclude-flip", action="store_true",
                        help="DOLG is not mirror-invariant; leave the flip transform out")
    parser.add_argument("--rerank", default="none", help="comma list of: none, superglobal")
    parser.add_argument("--categories", type=Path, help="file<TAB>category TSV")
    parser.add_argument("--query-photos", help="comma list of names, or a recipe.json")
    parser.add_argument("--pixel-chain", default="auto",
                        help="comma list of auto, official, fast: each artifact once per chain")
    parser.add_argument("--threshold-folds", type=int, default=0, metavar="F",
                        help="score-threshold study with F held-out folds (0: off)")
    parser.add_argument("--rescore-rows", default="",
                        help="comma list of fp16, int8: figures with stored rows at that "
                             "precision")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = sorted(
        p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    transforms = [t for t in TRANSFORM_SETS[args.transforms]
                  if not (args.exclude_flip and t == "flip")]
    reranks = [r.strip() for r in args.rerank.split(",") if r.strip()]
    if not set(reranks) <= {"none", "superglobal"}:
        raise SystemExit(f"--rerank: expected none and/or superglobal, got {reranks}")
    categories = read_categories(args.categories) if args.categories else None
    query_photos = read_query_photos(args.query_photos) if args.query_photos else None
    if query_photos and not set(query_photos) <= {p.name for p in photos}:
        raise SystemExit(f"--query-photos not in {args.photos}: "
                         f"{sorted(set(query_photos) - {p.name for p in photos})}")
    chains = [c.strip() for c in args.pixel_chain.split(",") if c.strip()]
    if not chains or not set(chains) <= {"auto", "official", "fast"}:
        raise SystemExit(f"--pixel-chain: expected auto, official and/or fast, got {chains}")
    rows = [r.strip() for r in args.rescore_rows.split(",") if r.strip()]
    results = [asyncio.run(evaluate(d, photos, transforms, reranks, categories,
                                    args.threshold_folds, query_photos, chain, rows))
               for d in args.model_dir or [Path("index_data/model")] for chain in chains]
    print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
