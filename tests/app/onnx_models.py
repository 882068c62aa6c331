"""Tiny real ONNX embedding graphs (built with onnx.helper) and matching model_meta.json files.

- "closed form" (`write_artifact`, `build_onnx`): image [batch,3,height,width] -> Conv 1x1
  (3->dim, fixed random weights) -> ReLU -> ReduceMean over H,W -> LpNormalization (optional)
  -> embedding [batch,dim]. `reference_forward` is its exact output, so inference tests can
  check the session; variants (names, fixed axes, no in-graph L2) exercise the graph-vs-meta
  checks.
- "two conv" (`write_tiny_model`, `build_tiny_onnx`): workbench/artifacts/tiny_model.py, what
  service, reliability and tool tests serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.artifacts import MODEL_FILE, ModelMeta, Preprocessing, save_model_meta
from workbench.artifacts.tiny_model import save_graph, tiny_meta

DIM = 16  # closed-form graph


def make_meta(
    model_path: Path,
    *,
    dim: int = DIM,
    l2_in_graph: bool = True,
    input_name: str = "image",
    output_name: str = "embedding",
    preprocessing: Preprocessing | None = None,
) -> ModelMeta:
    """The sidecar of a closed-form graph (16-d unless told otherwise)."""
    return tiny_meta(
        model_path,
        dim=dim,
        l2_in_graph=l2_in_graph,
        input_name=input_name,
        output_name=output_name,
        preprocessing=preprocessing,
        name="tiny-inference-test",
        description="1x1 conv test graph",
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
    save_graph(
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
