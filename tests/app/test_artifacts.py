import json
from pathlib import Path

import pytest

from app.artifacts import (
    META_FILE,
    ModelMeta,
    Preprocessing,
    SourceInfo,
    TensorSpec,
    load_model_meta,
    save_model_meta,
    sha256_file,
)
from app.errors import ArtifactMismatch


def _meta(sha: str) -> ModelMeta:
    return ModelMeta(
        name="t",
        version="1",
        depth=50,
        onnx_sha256=sha,
        opset=17,
        input=TensorSpec(name="image", shape=["batch", 3, "height", "width"]),
        output=TensorSpec(name="embedding", shape=["batch", 512]),
        embedding_dim=512,
        source=SourceInfo(kind="random-init", seed=0),
    )


def test_meta_round_trip_and_sha_check(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"graph bytes")
    meta = _meta(sha256_file(tmp_path / "model.onnx"))
    save_model_meta(meta, tmp_path)
    assert load_model_meta(tmp_path) == meta
    # Defaults are the official extraction: BGR order, BGR mean/std, 5 scales.
    prep = load_model_meta(tmp_path).preprocessing
    assert prep.colour_order == "BGR" and prep.mean == (0.406, 0.456, 0.485)
    assert prep.scales == (0.3535, 0.5, 0.7071, 1.0, 1.4142)
    (tmp_path / "model.onnx").write_bytes(b"another graph")
    with pytest.raises(ArtifactMismatch, match="does not match"):
        load_model_meta(tmp_path)


def test_missing_and_invalid_meta_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMismatch, match=META_FILE):
        load_model_meta(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"name": "x"}))
    with pytest.raises(ArtifactMismatch, match="invalid model meta"):
        load_model_meta(tmp_path)


def test_preprocessing_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Preprocessing(scales=())
    with pytest.raises(ValueError):
        Preprocessing(std=(0.2, 0.0, 0.2))


def test_family_and_backbone_are_descriptive_strings(tmp_path: Path) -> None:
    """Any model family honouring the graph contract is accepted (no closed list)."""
    (tmp_path / "model.onnx").write_bytes(b"graph bytes")
    meta = _meta(sha256_file(tmp_path / "model.onnx")).model_copy(update={
        "architecture": "pooled", "backbone": "efficientnet_lite0", "depth": None,
        "embedding_dim": 1280,
        "preprocessing": Preprocessing(colour_order="RGB", mean=(0.5,) * 3, std=(0.5,) * 3,
                                       interpolation="bicubic"),
    })
    save_model_meta(meta, tmp_path)
    loaded = load_model_meta(tmp_path)
    assert (loaded.architecture, loaded.backbone, loaded.depth) == (
        "pooled", "efficientnet_lite0", None)
    assert loaded.preprocessing.interpolation == "bicubic"
    for family in ("cfcd", "some-future-family"):
        assert ModelMeta.model_validate({**meta.model_dump(), "architecture": family})
    with pytest.raises(ValueError):
        Preprocessing(interpolation="lanczos")  # type: ignore[arg-type]
