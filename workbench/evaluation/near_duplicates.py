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

The run through the service is near_duplicate_service.py; the figures computed from the
descriptors alone (rows, threshold folds) are near_duplicate_scores.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import cast

from app.inference.preprocess import IMAGE_SUFFIXES
from app.search.service import RerankMode
from models.evaluation.near_duplicates import HARD_TRANSFORMS, TRANSFORMS
from workbench.evaluation.near_duplicate_scores import ROW_KINDS
from workbench.evaluation.near_duplicate_service import evaluate

TRANSFORM_SETS = {
    "standard": list(TRANSFORMS),
    "hard": list(HARD_TRANSFORMS),
    "all": [*TRANSFORMS, *HARD_TRANSFORMS],
}


def read_categories(path: Path) -> dict[str, str]:
    """TSV with a `file<TAB>category` header; lines starting with # are comments."""
    rows = [
        line.split("\t")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if not rows or rows[0][:2] != ["file", "category"]:
        raise SystemExit(f"{path}: expected a 'file<TAB>category' header")
    return {r[0]: r[1] for r in rows[1:]}


def read_query_photos(value: str) -> list[str]:
    """Comma list of file names, or a recipe.json whose `heldout_photos` are the queries."""
    if value.endswith(".json"):
        return list(json.loads(Path(value).read_text(encoding="utf-8"))["heldout_photos"])
    return [v.strip() for v in value.split(",") if v.strip()]


def comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        help="artifact directory (repeatable; default index_data/model)",
    )
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--transforms", choices=sorted(TRANSFORM_SETS), default="standard")
    parser.add_argument(
        "--exclude-flip",
        action="store_true",
        help="DOLG is not mirror-invariant; leave the flip transform out",
    )
    parser.add_argument("--rerank", default="none", help="comma list of: none, superglobal")
    parser.add_argument("--categories", type=Path, help="file<TAB>category TSV")
    parser.add_argument("--query-photos", help="comma list of names, or a recipe.json")
    parser.add_argument(
        "--pixel-chain",
        default="auto",
        help="comma list of auto, official, fast: each artifact once per chain",
    )
    parser.add_argument(
        "--threshold-folds",
        type=int,
        default=0,
        metavar="F",
        help="score-threshold study with F held-out folds (0: off)",
    )
    parser.add_argument(
        "--rescore-rows",
        default="",
        help="comma list of fp16, int8: figures with stored rows at that precision",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    transforms = [
        t for t in TRANSFORM_SETS[args.transforms] if not (args.exclude_flip and t == "flip")
    ]
    reranks = comma_list(args.rerank)
    if not set(reranks) <= {"none", "superglobal"}:
        raise SystemExit(f"--rerank: expected none and/or superglobal, got {reranks}")
    categories = read_categories(args.categories) if args.categories else None
    if categories is not None:
        missing = [p.name for p in photos if p.name not in categories]
        if missing:
            raise SystemExit(f"no category for {missing}")
    query_photos = read_query_photos(args.query_photos) if args.query_photos else None
    if query_photos and not set(query_photos) <= {p.name for p in photos}:
        raise SystemExit(
            f"--query-photos not in {args.photos}: "
            f"{sorted(set(query_photos) - {p.name for p in photos})}"
        )
    chains = comma_list(args.pixel_chain)
    if not chains or not set(chains) <= {"auto", "official", "fast"}:
        raise SystemExit(f"--pixel-chain: expected auto, official and/or fast, got {chains}")
    rows = comma_list(args.rescore_rows)
    for kind in rows:
        if kind not in ROW_KINDS:
            raise SystemExit(f"--rescore-rows: expected fp16 and/or int8, got {kind!r}")
    results = [
        asyncio.run(
            evaluate(
                d,
                photos,
                transforms,
                cast(list[RerankMode], reranks),
                categories,
                args.threshold_folds,
                query_photos,
                chain,
                rows,
            )
        )
        for d in args.model_dir or [Path("index_data/model")]
        for chain in chains
    ]
    print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
