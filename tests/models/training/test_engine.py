"""The training loop on tiny images: it learns, it resumes bit for bit, its checkpoints are
self-describing and load where the rest of the project expects them."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from app.artifacts import Preprocessing
from models.checkpoint import build_model_from_checkpoint
from models.training.checkpointing import load_training_checkpoint
from models.training.config import TrainConfig, merge_resume_config
from models.training.distributed import DistContext
from models.training.engine import LAST, Trainer
from tests.models.training.toy import write_class_folders

pytestmark = pytest.mark.torch


def _fixed_batch_loss(trainer: Trainer) -> float:
    """Loss of the whole toy set as one batch (fixed augmentation), in train mode on a copy so
    the BatchNorm statistics of the trainer stay untouched."""
    net = copy.deepcopy(trainer.net).train()
    images = torch.stack([trainer.train_set[(i, 99)][0] for i in range(len(trainer.train_set))])
    labels = torch.tensor([s.label for s in trainer.data.train])
    with torch.no_grad():
        return F.cross_entropy(net(images, labels), labels).item()


def test_a_few_steps_lower_the_loss_on_a_separable_toy_set(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "toy", classes=2, per_class=4)
    cfg = TrainConfig(
        data_root=str(root), out_dir=str(tmp_path / "run"), image_size=32, batch_size=4,
        epochs=10, warmup_epochs=0, lr=0.01, head="curricularface", num_workers=0,
        val_fraction=0.0,
        max_steps=6, eval_before_train=False, crop_area_min=0.5, log_every=2,
    )
    trainer = Trainer(cfg, DistContext())
    before = _fixed_batch_loss(trainer)
    summary = trainer.fit()
    after = _fixed_batch_loss(trainer)
    assert summary["global_step"] == 6
    assert after < 0.5 * before, (before, after)
    # 2 steps per epoch: one log row per epoch, the lr going down the cosine.
    rows = trainer.train_csv.rows()
    assert [int(r["global_step"]) for r in rows] == [2, 4, 6]
    assert [float(r["lr"]) for r in rows] == pytest.approx([trainer.lr_at(e, 0) for e in range(3)])
    assert all(float(r["images_per_s"]) > 0 for r in rows)


def _resume_config(root: Path, out: Path, max_steps: int) -> TrainConfig:
    # 8 images, global batch 4 = micro-batch 2 x accumulation 2: 2 steps per epoch. The lr
    # changes every step (warm-up, per-step schedule), CurricularFace carries its `t` buffer.
    return TrainConfig(
        data_root=str(root), out_dir=str(out), image_size=32, batch_size=4, accum_steps=2,
        epochs=4, warmup_epochs=1, lr=0.02, lr_per_step=True, head="curricularface",
        num_workers=0, val_fraction=0.0, eval_before_train=False, max_steps=max_steps,
        keep_last=1, seed=3,
    )


def _state(trainer: Trainer) -> dict[str, Any]:
    return {
        "model": trainer.net.model.state_dict(),
        "head": trainer.net.head.state_dict(),
        "momentum": [
            s["momentum_buffer"] for s in trainer.optimizer.state_dict()["state"].values()
        ],
        "lr": trainer.optimizer.param_groups[0]["lr"],
    }


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["lr"] == b["lr"]
    for part in ("model", "head"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    assert len(a["momentum"]) == len(b["momentum"])
    assert all(torch.equal(x, y) for x, y in zip(a["momentum"], b["momentum"], strict=True))


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """3 straight steps vs 1 step, save, resume (crossing the epoch end), 2 more steps."""
    tmp = tmp_path_factory.mktemp("resume")
    root = write_class_folders(tmp / "toy", classes=2, per_class=4)
    straight = Trainer(_resume_config(root, tmp / "straight", 3), DistContext())
    straight.fit()
    first = Trainer(_resume_config(root, tmp / "chain", 1), DistContext())
    first.fit()
    after_one = _state(first)
    chain = tmp / "chain"
    resumed = Trainer(_resume_config(root, chain, 3), DistContext(), resume=chain / LAST)
    position_at_resume = dataclasses.replace(resumed.position)
    resumed.fit()
    return {"straight": straight, "resumed": resumed, "after_one": after_one,
            "position_at_resume": position_at_resume, "chain": chain}


def test_resume_reproduces_the_straight_run_bit_for_bit(resumed_runs: dict[str, Any]) -> None:
    straight, resumed = resumed_runs["straight"], resumed_runs["resumed"]
    pos = resumed_runs["position_at_resume"]
    assert (pos.epoch, pos.step_in_epoch, pos.global_step) == (0, 1, 1)
    assert straight.steps_per_epoch == 2
    assert (resumed.position.epoch, resumed.position.step_in_epoch) == (1, 1)
    assert resumed.position.global_step == straight.position.global_step == 3
    _assert_identical(_state(straight), _state(resumed))
    # ... and training really moved the weights after the resume.
    assert not torch.equal(resumed_runs["after_one"]["model"]["fc.weight"],
                           resumed.net.model.state_dict()["fc.weight"])


def test_checkpoint_round_trips(resumed_runs: dict[str, Any]) -> None:
    chain: Path = resumed_runs["chain"]
    resumed: Trainer = resumed_runs["resumed"]
    assert sorted(p.name for p in chain.glob("*.pth")) == ["epoch_0001.pth", "last.pth"]
    obj = load_training_checkpoint(chain / LAST)  # weights_only: plain tensors and containers
    training = obj["training"]
    assert (training["epoch_index"], training["step_in_epoch"], training["global_step"]) == (
        1, 1, 3)
    assert obj["epoch"] == 1 and training["class_names"] == ["c0", "c1"]
    assert TrainConfig.from_dict(training["train_config"]) == resumed.cfg
    assert obj["config"] == resumed.model_config.to_dict()
    for key, value in resumed.net.head.state_dict().items():
        assert torch.equal(obj["head_state"][key], value)
    saved_momenta = [s["momentum_buffer"] for s in obj["optimizer_state"]["state"].values()]
    live_momenta = _state(resumed)["momentum"]
    assert all(torch.equal(a, b) for a, b in zip(saved_momenta, live_momenta, strict=True))
    # The export path reads it like any of our checkpoints, and its preprocessing validates.
    model, info = build_model_from_checkpoint(chain / LAST)
    assert info.kind == "ours" and info.epoch == 1
    for key, value in resumed.net.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    prep = Preprocessing(**info.preprocessing)  # type: ignore[arg-type]
    assert prep.colour_order == "BGR" and prep.mean == (0.406, 0.456, 0.485)


def test_resume_refuses_changed_training_settings() -> None:
    stored = TrainConfig(data_root="d", out_dir="o", lr=0.05, max_steps=10)
    merged = merge_resume_config(stored, TrainConfig(max_steps=20, num_workers=2))
    assert (merged.max_steps, merged.num_workers, merged.lr, merged.data_root) == (20, 2, 0.05,
                                                                                   "d")
    with pytest.raises(ValueError, match="lr"):
        merge_resume_config(stored, TrainConfig(lr=0.1))
