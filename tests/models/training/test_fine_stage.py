"""CFCD's fine stage in the trainer: stage 1 -> scores file -> stage 2 (tuples + local
triplet), started from the stage-1 checkpoint, logged, resumable bit for bit."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from models.cfcd.local_matching import local_descriptors, superfeature_triplet_loss
from models.checkpoint import build_model_from_checkpoint
from models.training.confusions import read_scores
from models.training.distributed import DistContext
from models.training.engine import LAST, Trainer
from models.training.network import FineStageNet, TrainNet
from models.training.scoring import score_training_set
from models.training.tuples import TupleBatchSampler
from tests.models.training.toy import write_class_folders, write_photos

pytestmark = pytest.mark.torch


def _config(root: Path, out: Path, **kw: Any) -> Any:
    from models.training.config import TrainConfig

    # 64 px: the last stage is 2 x 2 = 4 local descriptors per image (a 1 x 1 map has no
    # top-50 % attention location, hence no match). 4 classes x 4 images.
    base = dict(data_root=str(root), out_dir=str(out), image_size=64, batch_size=8,
                epochs=3, warmup_epochs=0, lr=0.01, head="madacos", num_workers=0,
                val_fraction=0.0, eval_before_train=False, crop_area_min=0.5, log_every=1,
                seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _photo_classes(root: Path, classes: int = 4, per_class: int = 4) -> Path:
    """root/c<k>/<i>.png: class k is structured photo k (gradients + a block) under fresh
    noise per image, so local descriptors differ across locations and can be matched."""
    photos = write_photos(root / "_src", classes)
    rng = np.random.default_rng(0)
    for k, src in enumerate(sorted(photos.glob("*.jpg"))):
        pixels = np.asarray(Image.open(src).convert("RGB").resize((72, 64)), dtype=np.float64)
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            noisy = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"c{k}" / f"{i}.png")
    shutil.rmtree(photos)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fine")
    root = _photo_classes(tmp / "toy")
    stage1 = Trainer(_config(root, tmp / "s1", max_steps=2), DistContext())
    stage1.fit()
    scores = tmp / "s1" / "scores.txt"
    summary = score_training_set(tmp / "s1" / LAST, scores, device="cpu", batch_size=8,
                                 num_workers=0)
    s2 = dict(stage=2, tuple_size=4, init_weights=str(tmp / "s1" / LAST), init_format="ours",
              scores_file=str(scores), max_steps=3)
    stage2 = Trainer(_config(root, tmp / "s2", **s2), DistContext())
    stage2.fit()
    # Resume: 1 step, save, resume to 3 steps; compare with the straight 3-step run.
    first = Trainer(_config(root, tmp / "chain", **{**s2, "max_steps": 1}), DistContext())
    first.fit()
    resumed = Trainer(_config(root, tmp / "chain", **s2), DistContext(),
                      resume=tmp / "chain" / LAST)
    position = dataclasses.replace(resumed.position)
    resumed.fit()
    return {"root": root, "tmp": tmp, "stage1": stage1, "scores": scores, "summary": summary,
            "stage2": stage2, "resumed": resumed, "position": position}


def test_scores_file_covers_the_training_images(runs: dict[str, Any]) -> None:
    rows = read_scores(runs["scores"])
    stage1: Trainer = runs["stage1"]
    assert [r.path for r in rows] == [s.path for s in stage1.data.train]
    assert {r.label for r in rows} == {"c0", "c1", "c2", "c3"}
    assert all(r.predicted in {"c0", "c1", "c2", "c3"} and 0 < r.score <= 1 for r in rows)
    assert runs["summary"]["images"] == 16


def test_stage_two_starts_from_stage_one_with_its_head(runs: dict[str, Any]) -> None:
    stage1: Trainer = runs["stage1"]
    stage2: Trainer = runs["stage2"]
    assert isinstance(stage2.net, FineStageNet) and isinstance(stage2.batch_sampler,
                                                               TupleBatchSampler)
    assert type(stage1.net) is TrainNet
    assert stage2.init_report["source"] == "ours" and stage2.init_report["head_from_init"]
    # 16 images / tuples of 4 = 4 tuples = 2 steps of 2 tuples per epoch.
    assert stage2.steps_per_epoch == 2 and stage2.position.global_step == 3
    rows = stage2.train_csv.rows()
    assert len(rows) == 3
    triplets = [float(r["triplet_loss"]) for r in rows]
    assert all(t >= 0 for t in triplets) and any(t > 0 for t in triplets)
    # Total loss = cross-entropy + 1.0 x triplet, so it is never below the triplet part.
    assert all(float(r["loss"]) >= t for r, t in zip(rows, triplets, strict=True))
    epoch_row = stage2.epoch_csv.rows()[0]
    assert float(epoch_row["train_triplet_loss"]) >= 0
    # The stage-2 checkpoint is an ordinary one for export.
    _model, info = build_model_from_checkpoint(runs["tmp"] / "s2" / LAST)
    assert info.kind == "ours"


def test_stage_two_resumes_bit_for_bit(runs: dict[str, Any]) -> None:
    straight: Trainer = runs["stage2"]
    resumed: Trainer = runs["resumed"]
    pos = runs["position"]
    assert (pos.epoch, pos.step_in_epoch, pos.global_step) == (0, 1, 1)
    for key, value in straight.net.model.state_dict().items():
        assert torch.equal(value, resumed.net.model.state_dict()[key]), key
    for key, value in straight.net.head.state_dict().items():
        assert torch.equal(value, resumed.net.head.state_dict()[key]), key


def test_fine_stage_net_sums_the_tuple_losses_of_the_last_stage(runs: dict[str, Any]) -> None:
    stage2: Trainer = runs["stage2"]
    net = stage2.net
    assert isinstance(net, FineStageNet)
    batch = next(iter(stage2.train_loader))
    images, labels = batch
    torch.manual_seed(0)
    net.train()
    logits, triplet = net(images, labels)
    assert logits.shape == (8, 4)
    # The same forward, by hand (train-mode BN: same batch, same statistics).
    _f3, f4 = net.model.forward_features(images)  # type: ignore[operator]
    local, attention = local_descriptors(f4)
    expected = sum(superfeature_triplet_loss(local[i:i + 4], attention[i:i + 4]).item()
                   for i in (0, 4))
    assert triplet.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_stage_two_refuses_a_micro_batch_that_splits_tuples(tmp_path: Path) -> None:
    from models.training.data import DataError

    root = write_class_folders(tmp_path / "toy", classes=4, per_class=4)
    with pytest.raises(DataError, match="multiple of the tuple size"):
        Trainer(_config(root, tmp_path / "r", stage=2, tuple_size=3), DistContext())
