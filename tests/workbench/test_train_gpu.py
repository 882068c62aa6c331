"""Training and the fp16 artifact on a real GPU: workbench/train.py on CUDA (AMP as `auto`
picks it) learns a few steps, and its checkpoint exported as fp32 and fp16 gives the same
descriptors on the CUDA execution provider.

Marked `gpu` (and `torch`): skipped without a CUDA device for torch and a CUDA execution
provider for onnxruntime. `workbench/gpu/proof.sh` runs them on a GPU machine.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.artifacts import load_model_meta
from app.config import InferenceSettings
from app.inference.session import CUDA, OnnxSession
from models.export import FP16_MIN_COSINE
from tests.models.training.toy import write_photos

pytestmark = [
    pytest.mark.torch,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device"),
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers(),
        reason="onnxruntime offers no CUDAExecutionProvider here",
    ),
]

MODULES = {"make_photo_recipe": "workbench.training.photo_recipe", "train": "workbench.train",
           "export": "workbench.export", "score_training_set": "workbench.training.score_set"}


def _load(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])


def test_train_on_cuda_then_fp16_matches_fp32_on_cuda(tmp_path: Path) -> None:
    recipe, train, export = _load("make_photo_recipe"), _load("train"), _load("export")
    data = tmp_path / "recipe"
    recipe.run(
        [
            "--photos",
            str(write_photos(tmp_path / "photos", 5)),
            "--out",
            str(data),
            "--holdout",
            "2",
            "--views",
            "4",
            "--view-side",
            "64",
            "--workers",
            "1",
            "--transforms",
            "crop_center_70,jpeg_q20",
        ]
    )
    run = tmp_path / "run"
    summary = train.run(
        [
            "--train-list",
            str(data / "train_list.txt"),
            "--out-dir",
            str(run),
            "--image-size",
            "64",
            "--batch-size",
            "4",
            "--num-workers",
            "0",
            "--log-every",
            "1",
            "--device",
            "cuda",
            "--max-steps",
            "3",
            "--no-eval-before-train",
            "--lr",
            "0.01",
        ]
    )
    assert summary["global_step"] == 3
    log = (run / "train.log").read_text()
    assert " on cuda" in log
    with (run / "train_log.csv").open(newline="") as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

    sessions = {}
    for precision in ("fp32", "fp16"):
        out = tmp_path / precision
        flags = ["--fp16"] if precision == "fp16" else []
        export.run(
            [
                "--checkpoint",
                str(run / "last.pth"),
                "--out",
                str(out),
                "--max-side",
                "128",
                "--scales",
                "1.0",
                *flags,
            ]
        )
        meta = load_model_meta(out)
        assert meta.precision == precision
        sessions[precision] = OnnxSession(
            out / meta.onnx_file, meta, InferenceSettings(providers="cuda"), require_gpu=True
        )
    batch = np.random.default_rng(0).standard_normal((4, 3, 96, 128)).astype(np.float32)
    fp32, fp16 = sessions["fp32"].run(batch), sessions["fp16"].run(batch)
    cosines = np.sum(fp32 * fp16, axis=1)  # unit rows
    assert cosines.min() >= FP16_MIN_COSINE, cosines
