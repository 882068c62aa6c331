"""The stage-1 scores file: format round trip, mapping onto the training samples, inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models.heads import MadaCos
from models.training.confusions import (
    ScoreRow,
    confusions_for,
    read_scores,
    score_samples,
    write_scores,
)
from models.training.data import DataError, Sample


def test_scores_round_trip_with_spaces_in_paths(tmp_path: Path) -> None:
    rows = [ScoreRow("a dir/x 1.jpg", "7", "7", 0.91), ScoreRow("b/y.jpg", "3", "7", 0.4)]
    path = write_scores(tmp_path / "scores.txt", rows)
    assert path.read_text().splitlines()[0] == "a dir/x 1.jpg 7 7 0.910000"
    assert read_scores(path) == rows
    (tmp_path / "bad.txt").write_text("x.jpg 1 2\n")
    with pytest.raises(DataError, match=r"bad\.txt:1"):
        read_scores(tmp_path / "bad.txt")


def test_confusions_map_paths_to_sample_indices() -> None:
    names = ["3", "7", "9"]
    samples = [Sample("a.jpg", 1), Sample("b.jpg", 0), Sample("c.jpg", 2)]
    rows = [ScoreRow("b.jpg", "3", "7", 0.5), ScoreRow("a.jpg", "7", "7", 0.9)]
    conf = confusions_for(rows, samples, names)
    assert conf.predicted.tolist() == [1, 1, -1]  # c.jpg has no line
    with pytest.raises(DataError, match="has class '9' there"):
        confusions_for([ScoreRow("a.jpg", "9", "7", 0.5)], samples, names)
    with pytest.raises(DataError, match="unknown class '5'"):
        confusions_for([ScoreRow("a.jpg", "7", "5", 0.5)], samples, names)


@pytest.mark.torch
def test_score_samples_predicts_the_nearest_class_centre() -> None:
    # Descriptors are the inputs themselves (flattened); centres are the 3 unit axes, so the
    # prediction is the argmax coordinate and the score its softmax under MadaCos' scale.
    head = MadaCos(3, 3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3))
    model = nn.Flatten()
    images = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [0.1, 1.0, 0.3], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 2])
    loader = [(images[:2], labels[:2]), (images[2:], labels[2:])]
    head.train()
    predicted, scores = score_samples(model, head, loader, torch.device("cpu"))  # type: ignore[arg-type]
    assert predicted == [0, 2, 1, 2]
    assert head.training  # restored
    assert all(0.0 < s <= 1.0 for s in scores)
    # Eval mode: no margin, logits = s * cos with s from the batch; the score is the softmax.
    head.eval()
    cos = torch.nn.functional.normalize(images[:2], dim=1)
    logits = head(images[:2], labels[:2])
    assert torch.allclose(logits, cos * head.last_scale.float())
    assert scores[0] == pytest.approx(logits.softmax(1)[0, 0].item(), rel=1e-6)
