"""The stage-1 scores file that CFCD's hard-negative tuples read (docs/ALGORITHMS.md 4.3).

Format (the official `landmark_scores.txt`, written by its `infer_model`): one line per training
image, `<relative_path> <class_id> <predicted_class_id> <score>`, class ids as in the training
list (or the class folder names), score the softmax probability of the prediction. Paths may
contain spaces (the last three fields are split off).

`score_samples` is the inference pass: the stage-1 network and its margin head in eval mode
(MadaCos then applies no margin), each image prepared like a validation image, the top-1 class
of softmax(logits).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from models.training.data import DataError, Sample
from models.training.tuples import Confusions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreRow:
    path: str
    label: str  # class id as in the training list
    predicted: str
    score: float


def write_scores(path: str | os.PathLike[str], rows: Sequence[ScoreRow]) -> Path:
    """Write the scores file (temp file + rename, so a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        for r in rows:
            handle.write(f"{r.path} {r.label} {r.predicted} {r.score:.6f}\n")
    os.replace(tmp, path)
    return path


def read_scores(path: str | os.PathLike[str]) -> list[ScoreRow]:
    path = Path(path)
    rows: list[ScoreRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=3)
            if len(parts) != 4:
                raise DataError(f"{path.name}:{number}: expected `<path> <class> <predicted> "
                                f"<score>`, got {line!r}")
            try:
                score = float(parts[3])
            except ValueError as exc:
                raise DataError(
                    f"{path.name}:{number}: score {parts[3]!r} is not a number"
                ) from exc
            rows.append(ScoreRow(parts[0], parts[1], parts[2], score))
    return rows


def confusions_for(
    rows: Sequence[ScoreRow], samples: Sequence[Sample], class_names: Sequence[str]
) -> Confusions:
    """Stage-1 predictions of `samples` (by path). Samples without a line get no prediction
    (their tuples use random negatives); a line whose class disagrees with the sample's is
    an error (the file belongs to another list)."""
    index = {name: i for i, name in enumerate(class_names)}
    by_path = {r.path: r for r in rows}
    predicted: dict[int, int] = {}
    for i, s in enumerate(samples):
        row = by_path.get(s.path)
        if row is None:
            continue
        if index.get(row.label) != s.label:
            raise DataError(f"scores file: {s.path} has class {row.label!r} there but "
                            f"{class_names[s.label]!r} in the training data")
        if row.predicted not in index:
            raise DataError(f"scores file: {s.path} is predicted as unknown class "
                            f"{row.predicted!r}")
        predicted[i] = index[row.predicted]
    missing = len(samples) - len(predicted)
    wrong = sum(1 for i, p in predicted.items() if p != samples[i].label)
    logger.info("scores file: %d of %d training images scored, %d misclassified by stage 1%s",
                len(predicted), len(samples), wrong,
                f" ({missing} without a line: random negatives)" if missing else "")
    return Confusions.from_mapping(len(samples), predicted)


@torch.no_grad()
def score_samples(
    model: nn.Module,
    head: nn.Module,
    loader: DataLoader[Any],
    device: torch.device,
    *,
    autocast: AbstractContextManager[Any] | None = None,
) -> tuple[list[int], list[float]]:
    """(predicted label, softmax score) per sample of `loader` (in its order); `loader` yields
    (images [B,3,S,S], labels [B])."""
    was = model.training, head.training
    model.eval()
    head.eval()
    predicted: list[int] = []
    scores: list[float] = []
    try:
        for images, labels in loader:
            with autocast or nullcontext():
                desc = model(images.to(device))  # [B,D]
            logits = head(desc.float(), labels.to(device))  # [B,C]; no margin in eval mode
            top = logits.softmax(dim=1).max(dim=1)
            predicted.extend(top.indices.tolist())
            scores.extend(top.values.tolist())
    finally:
        model.train(was[0])
        head.train(was[1])
    return predicted, scores
