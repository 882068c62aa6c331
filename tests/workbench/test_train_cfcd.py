"""CFCD through the CLIs: stage 1 from ImageNet Lite0 -> scores file -> stage 2 under torchrun
with two gloo processes (tuples split over ranks, MadaCos gathered) -> export."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from app.artifacts import load_model_meta
from models.training.checkpointing import load_training_checkpoint
from tests.models.training.toy import write_photo_classes

pytestmark = pytest.mark.torch

MODULES = {"make_photo_recipe": "workbench.training.photo_recipe", "train": "workbench.train",
           "export": "workbench.export", "score_training_set": "workbench.training.score_set"}


def _load(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])


def test_stage_one_scores_and_ddp_stage_two(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = write_photo_classes(tmp_path / "toy", classes=4, per_class=4)
        common = ["--data-root", str(root), "--family", "cfcd", "--backbone",
                  "efficientnet_lite0", "--head", "madacos", "--image-size", "64",
                  "--batch-size", "8", "--epochs", "2", "--num-workers", "0",
                  "--val-fraction", "0", "--no-eval-before-train", "--warmup-epochs", "0"]
        s1 = tmp_path / "s1"
        summary = _load("train").run([*common, "--imagenet", "--max-steps", "1",
                                       "--out-dir", str(s1)])
        assert summary["global_step"] == 1
        scores = s1 / "scores.txt"
        assert _load("score_training_set").main([
            "--checkpoint", str(s1 / "last.pth"), "--out", str(scores), "--device", "cpu",
            "--num-workers", "0", "--batch-size", "8"]) == 0
        assert len(scores.read_text().splitlines()) == 16
    finally:
        torch.set_num_threads(before)

    s2 = tmp_path / "s2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "workbench.train", *common, "--stage", "2", "--tuple-size", "4",
           "--init-weights", str(s1 / "last.pth"), "--init-format", "ours",
           "--scores-file", str(scores), "--max-steps", "2", "--log-every", "1",
           "--out-dir", str(s2)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["global_step"] == 2
    state = load_training_checkpoint(s2 / "last.pth")
    training = state["training"]
    # 16 images -> 4 tuples of 4 per epoch; one tuple per process per step.
    assert (training["world_size"], training["micro_batch"], training["steps_per_epoch"]) == (
        2, 4, 2)
    assert training["init"]["head_from_init"] and state["family"] == "cfcd"
    with (s2 / "train_log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["global_step"] for r in rows] == ["1", "2"]
    assert all(float(r["triplet_loss"]) >= 0 for r in rows)
    log = (s2 / "train.log").read_text()
    assert "matches/tuple" in log and "[rank 1]" not in log

    out = tmp_path / "artifact"
    _load("export").run(["--checkpoint", str(s2 / "last.pth"), "--out", str(out),
                          "--max-side", "96", "--scales", "1.0"])
    meta = load_model_meta(out)
    assert (meta.architecture, meta.backbone, meta.embedding_dim) == (
        "cfcd", "efficientnet_lite0", 512)
    assert meta.preprocessing.colour_order == "RGB" and meta.preprocessing.mean == (0.5,) * 3
