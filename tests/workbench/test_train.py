"""workbench/training/photo_recipe.py -> workbench/train.py -> workbench/export.py -> the meta.

Tiny photos and 32 px training on the CPU; the DDP smoke test runs two gloo processes.
"""

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

from app.artifacts import BGR_MEAN, load_model_meta
from models.training.checkpointing import load_training_checkpoint
from tests.models.training.toy import write_class_folders, write_photos

pytestmark = pytest.mark.torch

MODULES = {"make_photo_recipe": "workbench.training.photo_recipe", "train": "workbench.train",
           "export": "workbench.export", "score_training_set": "workbench.training.score_set"}


def _load(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Shared 2-core machine: one intra-op thread is much faster than two contending ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_photo_recipe_is_deterministic_and_complete(tmp_path: Path) -> None:
    recipe = _load("make_photo_recipe")
    photos = write_photos(tmp_path / "photos", 5)
    args = ["--photos", str(photos), "--holdout", "2", "--views", "3", "--view-side", "40",
            "--workers", "1", "--transforms", "crop_center_70,jpeg_q20"]
    summary = recipe.run([*args, "--out", str(tmp_path / "a")])
    recipe.run([*args, "--out", str(tmp_path / "b")])
    a, b = tmp_path / "a", tmp_path / "b"
    assert (summary["classes"], summary["train_images"], summary["queries"]) == (3, 9, 4)
    assert summary["gallery"] == 5 and summary["distractors"] == 3
    assert (a / "train_list.txt").read_text() == (b / "train_list.txt").read_text()
    first_view = (a / "train_list.txt").read_text().split()[0]
    assert (a / first_view).read_bytes() == (b / first_view).read_bytes()
    lines = (a / "retrieval_list.txt").read_text().splitlines()
    roles = [line.split()[-1] for line in lines]
    assert roles.count("query") == 4 and roles.count("gallery") == 5
    assert set(summary["heldout_photos"]).isdisjoint(summary["train_photos"])
    assert str(tmp_path) not in (a / "recipe.json").read_text()
    # --views 0: the originals, listed --repeats times.
    flat = recipe.run([*args, "--out", str(tmp_path / "c"), "--views", "0", "--repeats", "5",
                        "--no-distractors"])
    assert flat["train_images"] == 15 and flat["gallery"] == 2


def test_train_resume_export_and_service_meta(tmp_path: Path) -> None:
    recipe, train, export = _load("make_photo_recipe"), _load("train"), _load("export")
    data = tmp_path / "recipe"
    recipe.run(["--photos", str(write_photos(tmp_path / "photos", 5)), "--out", str(data),
                 "--holdout", "2", "--views", "4", "--view-side", "48", "--workers", "1",
                 "--transforms", "crop_center_70,jpeg_q20"])
    run = tmp_path / "run"
    common = ["--out-dir", str(run), "--image-size", "32", "--batch-size", "4",
              "--num-workers", "0", "--log-every", "1"]
    summary = train.run([
        *common, "--train-list", str(data / "train_list.txt"),
        "--retrieval-list", str(data / "retrieval_list.txt"), "--retrieval-max-side", "40",
        "--val-fraction", "0.25", "--epochs", "1", "--lr", "0.01",
    ])
    # 12 views, 1 per class held out for val: 9 training images -> 2 steps of 4.
    assert summary["epochs_done"] == 1 and summary["global_step"] == 2
    epochs = _rows(run / "epochs.csv")
    assert [r["epoch"] for r in epochs] == ["0", "1"]  # before training, after epoch 1
    for row in epochs:
        assert 0.0 <= float(row["retrieval_map"]) <= 1.0
        assert 0.0 <= float(row["retrieval_recall_at_1"]) <= 1.0
        assert row["retrieval_queries"] == "4" and row["retrieval_gallery"] == "5"
        assert row["val_images"] == "3"
    assert len(_rows(run / "train_log.csv")) == 2
    assert {p.name for p in run.glob("*.pth")} == {"epoch_0001.pth", "last.pth", "best.pth"}

    # Same command line, one more epoch: --resume auto picks up last.pth (stopped after 1 step).
    resumed = train.run([*common, "--resume", "auto", "--epochs", "2", "--max-steps", "3"])
    assert resumed["global_step"] == 3
    state = load_training_checkpoint(run / "last.pth")["training"]
    assert (state["epoch_index"], state["step_in_epoch"], state["train_config"]["epochs"]) == (
        1, 1, 2)
    assert [r["global_step"] for r in _rows(run / "train_log.csv")] == ["1", "2", "3"]

    out = tmp_path / "artifact"
    export.run(["--checkpoint", str(run / "last.pth"), "--out", str(out)])
    meta = load_model_meta(out)  # the service's reader (verifies the ONNX sha256 too)
    assert meta.source.kind == "ours" and meta.source.checkpoint == "last.pth"
    assert meta.source.epoch == 1 and meta.depth == 50 and meta.embedding_dim == 512
    assert meta.preprocessing.colour_order == "BGR" and meta.preprocessing.mean == BGR_MEAN
    assert str(tmp_path) not in (out / "model_meta.json").read_text()


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """torchrun with 2 gloo processes: DistributedSampler shards, MadaCos gathers over both,
    rank 0 alone writes; the checkpoint records the world size."""
    root = write_class_folders(tmp_path / "toy", classes=2, per_class=5)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "workbench.train", "--data-root", str(root), "--out-dir", str(run),
           "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--num-workers", "0",
           "--head", "madacos", "--val-fraction", "0", "--no-eval-before-train"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # printed once, by rank 0
    assert summary["global_step"] == 1  # 10 images / (4 per process x 2) -> 1 step
    state = load_training_checkpoint(run / "last.pth")["training"]
    assert state["world_size"] == 2 and state["micro_batch"] == 4
    assert "[rank 1]" not in (run / "train.log").read_text()
