"""A real, tiny ONNX embedding graph + matching model_meta.json for service tests.

image [batch,3,height,width] -> Conv3x3/2 (3->16) -> ReLU -> Conv3x3/2 (16->32) -> ReLU
-> mean over H,W -> [batch,32] -> L2 normalise -> embedding [batch,32].
Random but fixed weights: enough to tell photos apart, cheap on two cores.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_onnx(path: Path, dim: int = TINY_DIM, seed: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((dim, 16, 3, 3)) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["image", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("LpNormalization", ["pooled"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_embedder",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def write_tiny_model(
    directory: Path,
    dim: int = TINY_DIM,
    max_side: int = 256,
    scales: tuple[float, ...] = (0.7071, 1.0),
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(directory / MODEL_FILE, dim)
    meta = ModelMeta(
        name="tiny-test",
        version="1",
        depth=50,
        onnx_sha256=sha256_file(directory / MODEL_FILE),
        opset=17,
        input=TensorSpec(name="image", shape=["batch", 3, "height", "width"]),
        output=TensorSpec(name="embedding", shape=["batch", dim]),
        embedding_dim=dim,
        preprocessing=Preprocessing(max_side=max_side, scales=scales),
        source=SourceInfo(kind="random-init", seed=0, description="tiny test graph"),
        intended_use="tests only",
    )
    save_model_meta(meta, directory)
    return directory
