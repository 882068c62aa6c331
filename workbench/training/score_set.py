#!/usr/bin/env python
"""Score every training image with a stage-1 checkpoint: the scores file of CFCD's fine stage.

    python -m workbench.training.score_set --checkpoint runs/s1/last.pth --out runs/s1/scores.txt
    python -m workbench.train ... --stage 2 --init-weights runs/s1/last.pth --init-format ours \
        --scores-file runs/s1/scores.txt

Lines are `<relative_path> <class_id> <predicted_class_id> <score>` (the official
`landmark_scores.txt`); the training split, classes and preprocessing are the checkpoint's.
Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from models.training.scoring import score_training_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="a stage-1 training checkpoint")
    p.add_argument("--out", type=Path, required=True, help="scores file to write")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=4)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    summary = score_training_set(args.checkpoint, args.out, device=args.device,
                                 batch_size=args.batch_size, num_workers=args.num_workers)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
