r"""Build an instance-discrimination training set from a folder of real photos.

    python -m workbench.training.photo_recipe --photos ../shared/data/photos \
        --out index_data/photo_recipe --holdout 8 --views 64

Each training photo (or each tile of it, with --tiles) is one class; its views are random
distortions of it (crop, rotation, colour, grey, blur, rescale, occlusion, JPEG re-encoding)
written to disk, on top of which the trainer applies the official augmentation. With
--views 0 no views are rendered: the list names each original --repeats times and only the
training augmentation varies it. The --holdout photos are never trained on: they form the
retrieval figure (queries = the transformed copies of models/evaluation/near_duplicates.py,
gallery = their originals plus, as distractors, the training photos' originals).

Writes under --out:
    train/<class>/vNNN.jpg     rendered views (or train/<class>/original.jpg with --views 0)
    train_list.txt             `<relative_path> <class_id>` (GLDv2 format)
    classes.tsv                class id, class name, source photo
    heldout/gallery/*.jpg, heldout/queries/*.jpg, heldout/distractors/*.jpg
    retrieval_list.txt         `<relative_path> <instance_id> <query|gallery>`
    recipe.json                parameters and counts (file names only, no paths)
Prints recipe.json on stdout. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.preprocess import IMAGE_SUFFIXES
from models.evaluation.near_duplicates import TRANSFORMS
from workbench.training.photo_views import cap, load_photo, render_class

logger = logging.getLogger("make_photo_recipe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--photos", type=Path, required=True, help="folder of photos")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--holdout", type=int, default=8, help="photos kept out for retrieval")
    p.add_argument("--views", type=int, default=64, help="rendered views per class (0: none)")
    p.add_argument("--repeats", type=int, default=64, help="list repeats with --views 0")
    p.add_argument(
        "--tiles",
        type=int,
        default=1,
        help="split each training photo into T x T tiles, one class each",
    )
    p.add_argument("--view-side", type=int, default=640, help="long side of views (no upscale)")
    p.add_argument("--heldout-side", type=int, default=1024, help="long-side cap, held-out")
    p.add_argument(
        "--transforms",
        default="all",
        help=f"comma list of query transforms (default all: {','.join(TRANSFORMS)})",
    )
    p.add_argument(
        "--distractors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the training photos to the gallery (never a correct answer)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags and write the recipe; returns recipe.json's content."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(photos) < args.holdout + 2:
        raise SystemExit(f"{args.photos}: {len(photos)} photos; need at least holdout + 2")
    names = list(TRANSFORMS) if args.transforms == "all" else args.transforms.split(",")
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise SystemExit(f"unknown transforms {unknown}; known: {list(TRANSFORMS)}")
    order = np.random.default_rng(args.seed).permutation(len(photos))
    heldout = sorted(photos[i] for i in order[: args.holdout])
    train = sorted(photos[i] for i in order[args.holdout :])
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    jobs: list[dict[str, Any]] = []
    for photo in train:
        for t in range(args.tiles * args.tiles):
            name = photo.stem if args.tiles == 1 else f"{photo.stem}__t{t}"
            jobs.append(
                {
                    "photo": str(photo),
                    "name": name,
                    "tile": t,
                    "tiles": args.tiles,
                    "class_id": len(jobs),
                    "views": args.views,
                    "repeats": args.repeats,
                    "view_side": args.view_side,
                    "seed": args.seed,
                    "out": str(out),
                }
            )
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rendered = list(pool.map(render_class, jobs))
    else:
        rendered = [render_class(job) for job in jobs]
    train_lines = [
        f"{path} {job['class_id']}"
        for job, paths in zip(jobs, rendered, strict=True)
        for path in paths
    ]
    (out / "train_list.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (out / "classes.tsv").write_text(
        "class_id\tname\tphoto\n"
        + "".join(f"{j['class_id']}\t{j['name']}\t{Path(j['photo']).name}\n" for j in jobs),
        encoding="utf-8",
    )

    retrieval_lines = []
    for photo in heldout:
        img = cap(load_photo(photo), args.heldout_side)
        gallery = out / "heldout" / "gallery" / f"{photo.stem}.jpg"
        gallery.parent.mkdir(parents=True, exist_ok=True)
        img.save(gallery, quality=92)
        retrieval_lines.append(f"heldout/gallery/{gallery.name} {photo.stem} gallery")
        queries = out / "heldout" / "queries"
        queries.mkdir(parents=True, exist_ok=True)
        for name in names:
            query = queries / f"{photo.stem}__{name}.jpg"
            TRANSFORMS[name](img).convert("RGB").save(query, quality=90)
            retrieval_lines.append(f"heldout/queries/{query.name} {photo.stem} query")
    if args.distractors:
        # The training photos' originals: a query that lands on one of them is a miss.
        for photo in train:
            target = out / "heldout" / "distractors" / f"{photo.stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            cap(load_photo(photo), args.heldout_side).save(target, quality=92)
            retrieval_lines.append(f"heldout/distractors/{target.name} {photo.stem} gallery")
    (out / "retrieval_list.txt").write_text("\n".join(retrieval_lines) + "\n", encoding="utf-8")

    recipe = {
        "photos_folder": args.photos.name,
        "seed": args.seed,
        "train_photos": [p.name for p in train],
        "heldout_photos": [p.name for p in heldout],
        "classes": len(jobs),
        "tiles": args.tiles,
        "views_per_class": args.views,
        "repeats": args.repeats if args.views == 0 else None,
        "train_images": len(train_lines),
        "view_side": args.view_side,
        "query_transforms": names,
        "queries": len(heldout) * len(names),
        "gallery": len(heldout) + (len(train) if args.distractors else 0),
        "distractors": len(train) if args.distractors else 0,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "wrote %d training images of %d classes; %d queries, %d gallery images",
        len(train_lines),
        len(jobs),
        recipe["queries"],
        recipe["gallery"],
    )
    return recipe


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(argv), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
