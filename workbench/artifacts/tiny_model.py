"""A tiny real ONNX embedding artifact (model.onnx + model_meta.json) for smoke runs and tests.

The "two conv" graph, image [batch,3,height,width] -> embedding [batch,dim]: Conv3x3/2 (3->16)
-> ReLU -> Conv3x3/2 (16->dim) -> ReLU -> mean over H,W -> L2, fixed random weights. Spatial
structure makes different photos give different descriptors, cheaply on two cores: what
`python -m workbench.bench --quick` measures and what the service, reliability and tool tests
serve. Built with onnx.helper; nothing is trained or downloaded.
"""

from __future__ import annotations

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

TINY_DIM = 32


def save_graph(
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
    """One opset-17 graph of `nodes` with `initializers`, checked, saved at `path`."""
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


def tiny_meta(
    model_path: Path,
    *,
    dim: int,
    l2_in_graph: bool = True,
    input_name: str = "image",
    output_name: str = "embedding",
    preprocessing: Preprocessing | None = None,
    name: str = "tiny-test",
    description: str = "tiny test graph",
) -> ModelMeta:
    """The sidecar of a tiny graph at `model_path` (its sha256, shapes, preprocessing)."""
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
    save_graph(path, nodes, {"w1": w1, "w2": w2}, dim=dim)


def write_tiny_model(
    directory: Path,
    dim: int = TINY_DIM,
    max_side: int = 256,
    scales: tuple[float, ...] = (0.7071, 1.0),
) -> Path:
    """model.onnx + model_meta.json of the two-conv graph in `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(directory / MODEL_FILE, dim)
    meta = tiny_meta(
        directory / MODEL_FILE,
        dim=dim,
        name="tiny-test",
        description="tiny test graph",
        preprocessing=Preprocessing(max_side=max_side, scales=scales),
    )
    save_model_meta(meta, directory)
    return directory
