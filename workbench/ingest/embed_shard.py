#!/usr/bin/env python
"""Embed one shard of an image listing into Parquet parts (vectors, ids, metadata, thumbnails).

    python -m workbench.ingest.embed_shard LISTING --shard i/n --out SHARDS [--root DIR] \
        [--part-size 1000]

LISTING is a folder tree of images or a text file of paths (one per line, relative to --root,
default the file's folder). Run n of these, one per shard, with any scheduler:

    for i in 0 1 2 3; do
        python -m workbench.ingest.embed_shard photos.txt --shard $i/4 --out shards &
    done
    # Kubernetes indexed Job: --shards 4 (index from JOB_COMPLETION_INDEX)
    # Slurm: sbatch --array=0-3 ... --shards 4 (index from SLURM_ARRAY_TASK_ID)

Resumable: re-run the same command after an interruption and finished parts are skipped.
Embedding uses the service's model artifact and preprocessing (SIMSEARCH_* settings, e.g.
--model-dir). Load the shards with workbench/ingest/load_shards.py. Prints a JSON summary.
The options' meaning (shard, settings) is workbench/ingest/shard_options.py; the embedding
is workbench/ingest/bulk.py.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from workbench.ingest.bulk import embed_shard
from workbench.ingest.shard_options import embed_settings, shard_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("listing", type=Path, help="folder of images, or a file of paths")
    parser.add_argument("--out", type=Path, required=True, help="shards folder")
    parser.add_argument("--shard", help="i/n: this job's shard (0-based)")
    parser.add_argument("--shards", type=int, help="n, with i from the scheduler's env")
    parser.add_argument("--root", type=Path, help="folder the listed paths are relative to")
    parser.add_argument("--part-size", type=int, default=1000, help="images per Parquet part")
    parser.add_argument("--id-mode", choices=("relpath", "sha256"), default="relpath")
    parser.add_argument("--model-dir", type=Path, help="model artifact (default: the service's)")
    parser.add_argument("--no-thumbnails", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--stop-after-parts", type=int, help="stop after writing this many parts (trial runs)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        shard = shard_from_args(args.shard, args.shards)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.listing.exists():
        parser.error(f"{args.listing} does not exist")
    settings = embed_settings(args.model_dir, thumbnails=not args.no_thumbnails)
    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(unit="img", dynamic_ncols=True, desc=f"shard {shard[0]}/{shard[1]}")
        except ImportError:  # pragma: no cover - tqdm ships with the dev and train extras
            bar = None
    report = embed_shard(
        args.listing,
        args.out,
        shard,
        settings,
        root=args.root,
        part_size=args.part_size,
        id_mode=args.id_mode,
        progress=None if bar is None else bar.update,
        stop_after_parts=args.stop_after_parts,
    )
    if bar is not None:
        bar.close()
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    from workbench.cli_errors import run_cli

    raise SystemExit(run_cli(main))
