"""Tiny real ONNX embedding graphs (built with onnx.helper) and matching model_meta.json files.

Two graphs, both image [batch,3,height,width] -> embedding [batch,dim]:
- "closed form" (`write_artifact`, `build_onnx`): Conv 1x1 (3->dim, fixed random weights) ->
  ReLU -> ReduceMean over H,W -> LpNormalization (optional). `reference_forward` is its exact
  output, so inference tests can check the session; variants (names, fixed axes, no in-graph
  L2) exercise the graph-vs-meta checks.
- "two conv" (`write_tiny_model`, `build_tiny_onnx`): Conv3x3/2 (3->16) -> ReLU -> Conv3x3/2
  (16->dim) -> ReLU -> mean over H,W -> L2. Spatial structure makes different photos give
  different descriptors, cheaply on two cores: what service, reliability and script tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts import (
    MODEL_FILE,
    ModelMeta,
    Preprocessing,
    SourceInfo,
    TensorSpec,
    save_model_meta,
    sha256_file,
)

DIM = 16  # closed-form graph
TINY_DIM = 32  # two-conv graph


def _save_graph(
    path: Path,
    nodes: list[Any],
    initializers: dict[str, np.ndarray],
    *,
    dim: int,
    input_name: str = "image",
    output_name: str = "embedding",
    input_shape: list[int | str] | None = None,
    output_shape: list[int | str] | None = None,
) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "tiny_embedder",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, input_shape or ["batch", 3, "height", "width"]
            )
        ],
        [
            helper.make_tensor_value_info(
                output_name, TensorProto.FLOAT, output_shape or ["batch", dim]
            )
        ],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime >= 1.14 reads; newer onnx would write a later IR
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def make_meta(
    model_path: Path,
    *,
    dim: int = DIM,
    l2_in_graph: bool = True,
    input_name: str = "image",
    output_name: str = "embedding",
    preprocessing: Preprocessing | None = None,
    name: str = "tiny-inference-test",
    description: str = "1x1 conv test graph",
) -> ModelMeta:
    return ModelMeta(
        name=name,
        version="1",
        depth=50,
        onnx_sha256=sha256_file(model_path),
        opset=17,
        input=TensorSpec(name=input_name, shape=["batch", 3, "height", "width"]),
        output=TensorSpec(name=output_name, shape=["batch", dim]),
        embedding_dim=dim,
        l2_normalized_in_graph=l2_in_graph,
        preprocessing=preprocessing or Preprocessing(),
        source=SourceInfo(kind="random-init", seed=0, description=description),
        intended_use="tests only",
    )


# ------------------------------------------------------------------ closed-form 1x1 graph


@dataclass(frozen=True)
class TinyArtifact:
    directory: Path
    model_path: Path
    meta: ModelMeta
    weight: np.ndarray  # [dim,3] 1x1 conv kernel
    bias: np.ndarray  # [dim]


def tiny_weights(dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((dim, 3)).astype(np.float32)
    bias = (rng.standard_normal(dim) * 0.1).astype(np.float32)
    return weight, bias


def build_onnx(
    path: Path,
    *,
    dim: int = DIM,
    seed: int = 0,
    l2_in_graph: bool = True,
    input_name: str = "image",
    output_name: str = "embedding",
    input_shape: list[int | str] | None = None,
    output_shape: list[int | str] | None = None,
) -> None:
    from onnx import helper

    weight, bias = tiny_weights(dim, seed)
    pooled = "pooled" if l2_in_graph else output_name
    nodes = [
        helper.make_node("Conv", [input_name, "w", "b"], ["conv"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("ReduceMean", ["relu"], [pooled], axes=[2, 3], keepdims=0),
    ]
    if l2_in_graph:
        nodes.append(helper.make_node("LpNormalization", [pooled], [output_name], axis=1, p=2))
    _save_graph(
        path,
        nodes,
        {"w": weight.reshape(dim, 3, 1, 1), "b": bias},
        dim=dim,
        input_name=input_name,
        output_name=output_name,
        input_shape=input_shape,
        output_shape=output_shape,
    )


def write_artifact(
    directory: Path,
    *,
    dim: int = DIM,
    seed: int = 0,
    l2_in_graph: bool = True,
    preprocessing: Preprocessing | None = None,
) -> TinyArtifact:
    """model.onnx + model_meta.json in `directory` (official 5 scales unless told otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    build_onnx(model_path, dim=dim, seed=seed, l2_in_graph=l2_in_graph)
    meta = make_meta(model_path, dim=dim, l2_in_graph=l2_in_graph, preprocessing=preprocessing)
    save_model_meta(meta, directory)
    weight, bias = tiny_weights(dim, seed)
    return TinyArtifact(directory, model_path, meta, weight, bias)


def reference_forward(
    batch: np.ndarray, weight: np.ndarray, bias: np.ndarray, l2: bool = True
) -> np.ndarray:
    """Closed form of the 1x1 graph: [B,3,H,W] -> [B,dim] (float64)."""
    x = batch.astype(np.float64)
    conv = np.einsum("dc,bchw->bdhw", weight.astype(np.float64), x) + bias[None, :, None, None]
    feat = np.maximum(conv, 0.0).mean(axis=(2, 3))
    if l2:
        feat /= np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-12)
    return feat


# ------------------------------------------------------------------ two-conv graph


def build_tiny_onnx(path: Path, dim: int = TINY_DIM, seed: int = 0) -> None:
    from onnx import helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((dim, 16, 3, 3)) * 0.1).astype(np.float32)
    # make_node's keyword attributes (after name/doc_string/domain) are typed Any there.
    conv: dict[str, Any] = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("LpNormalization", ["pooled"], ["embedding"], axis=1, p=2),
    ]
    _save_graph(path, nodes, {"w1": w1, "w2": w2}, dim=dim)


def write_tiny_model(
    directory: Path,
    dim: int = TINY_DIM,
    max_side: int = 256,
    scales: tuple[float, ...] = (0.7071, 1.0),
) -> Path:
    """model.onnx + model_meta.json of the two-conv graph in `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(directory / MODEL_FILE, dim)
    meta = make_meta(
        directory / MODEL_FILE,
        dim=dim,
        name="tiny-test",
        description="tiny test graph",
        preprocessing=Preprocessing(max_side=max_side, scales=scales),
    )
    save_model_meta(meta, directory)
    return directory
