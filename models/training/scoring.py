"""The stage-1 inference pass of CFCD: score every training image with a stage-1 checkpoint
and write the scores file that the fine stage's hard-negative tuples read
(`models.training.confusions`; the official `infer_model`).

The training split, class names and preprocessing come from the checkpoint's own training
settings, so the file names exactly the images (and classes) that stage 2 trains on when it
uses the same list, val fraction and seed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import build_model_from_checkpoint, load_state_strict
from models.training import checkpointing as ckpt
from models.training.config import TrainConfig
from models.training.confusions import ScoreRow, score_samples, write_scores
from models.training.data import ImageDataset, make_loader
from models.training.engine import build_data, colour_spec, embedding_dim
from models.training.network import build_head
from models.training.transforms import EvalTransform

logger = logging.getLogger(__name__)


def score_training_set(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 4,
) -> dict[str, Any]:
    """Write `out` (one `<path> <class> <predicted> <score>` line per training image of the
    checkpoint's run); returns counts and the stage-1 training accuracy."""
    state = ckpt.load_training_checkpoint(checkpoint)
    training = state["training"]
    cfg = TrainConfig.from_dict(training["train_config"])
    class_names: list[str] = training["class_names"]
    data = build_data(cfg, class_names)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                       else "cpu" if device == "auto" else device)
    model, info = build_model_from_checkpoint(checkpoint)
    head = build_head(cfg.head, embedding_dim(info.config), len(class_names),
                      scale=cfg.head_scale, margin=cfg.head_margin, alpha=cfg.madacos_alpha,
                      b_mode=cfg.madacos_b_mode)
    load_state_strict(head, state["head_state"], what=f"{cfg.head} head")
    model.to(dev)
    head.to(dev)
    transform = EvalTransform(size=cfg.image_size,
                              resize=cfg.val_resize or round(cfg.image_size * 256 / 224),
                              colour=colour_spec(cfg))
    dataset = ImageDataset(data.root, data.train, transform, seed=cfg.seed)
    loader = make_loader(dataset, sampler=None, batch_size=batch_size, num_workers=num_workers,
                         pin_memory=dev.type == "cuda", persistent_workers=False)
    start = time.perf_counter()
    predicted, scores = score_samples(model, head, loader, dev)
    rows = [
        ScoreRow(s.path, class_names[s.label], class_names[p], score)
        for s, p, score in zip(data.train, predicted, scores, strict=True)
    ]
    write_scores(out, rows)
    wrong = sum(1 for s, p in zip(data.train, predicted, strict=True) if p != s.label)
    summary = {"out": str(out), "images": len(rows), "misclassified": wrong,
               "train_top1": 1.0 - wrong / max(len(rows), 1),
               "seconds": round(time.perf_counter() - start, 1),
               "checkpoint": Path(checkpoint).name}
    logger.info("scored %d training images (%d misclassified) in %.1f s -> %s", len(rows),
                wrong, summary["seconds"], Path(out).name)
    return summary
