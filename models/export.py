"""ONNX export of a descriptor network, with graph checking and onnxruntime-vs-torch parity.

The graph maps `image` [batch,3,height,width] float32 (colour-ordered and normalised as the
artifact's preprocessing says) to `embedding` [batch,D] float32, L2-normalised inside the graph.
Multi-scale resizing and the per-scale averaging stay outside (the service does them).

Exporter and opset: the TorchScript exporter (`dynamo=False`) at opset 17.
- With torch 2.13 it exports DOLG in ~2 s, folds every BatchNorm into its conv, keeps batch,
  height and width dynamic (verified by the parity shapes below, odd sizes included) and writes
  no source paths into the graph.
- The torch.export-based exporter (the default since 2.9) took ~20 s here, cannot produce
  opset 17 for this graph (its 18 -> 17 down-conversion fails on a Reduce* node whose axes
  input must become an attribute) and stores stack traces with absolute paths in node
  metadata. It does produce a correct opset-18 graph (parity 1.0 here), so it is the fallback
  when torch drops the deprecated TorchScript exporter.
- Opset 17 because every op used (Conv, Pow, ReduceL2, Softplus, Expand, Gemm, ...) exists
  there unchanged, and 17 is the newest opset that onnxruntime >= 1.13 and TensorRT 8.6 both
  accept; nothing here needs 18+. `opset=` overrides it (18..20 export fine too).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.layers.functional import l2n
from models.resnet import fuse_conv_bn_

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
# Parity inputs: a square one, a batch of 2 with odd sizes, and a wide odd one.
PARITY_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 3, 224, 224),
    (2, 3, 161, 97),
    (1, 3, 97, 203),
)
FP32_MIN_COSINE = 0.9999
# The fp16 graph is compared with the fp32 torch model, so it reports its rounding error; a
# looser bar catches broken graphs (overflow, NaN) without failing on fp16 precision.
FP16_MIN_COSINE = 0.999
# Tracing runs the model once; a small input keeps that cheap (all axes stay dynamic).
TRACE_SHAPE = (1, 3, 96, 96)


class ExportParityError(RuntimeError):
    """onnxruntime and torch disagree beyond the tolerance (or the graph produced NaN)."""


class EmbeddingGraph(nn.Module):
    """What the graph computes: image [B,3,H,W] -> l2n(model(image)) [B,D]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return l2n(self.model(image), dim=1)


class HalfBackboneEmbeddingGraph(nn.Module):
    """fp16 variant with float32 I/O: the ResNet (nearly all FLOPs) runs in half precision;
    the head (GeM's x^p, the 1024-channel dot products, the norms) stays in float32, where
    fp16 would overflow or lose the small orthogonal component.
    image [B,3,H,W] f32 -> half -> backbone -> (f3, f4) -> float -> head -> l2n -> [B,D] f32.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise TypeError("fp16 export needs a model with forward_features/forward_head")
        # Any: forward_features / forward_head / globalmodel are duck-typed (DOLG, ResNetPool).
        net: Any = copy.deepcopy(model).eval()
        # Fold BN in float32, then round once (see fuse_conv_bn_).
        fuse_conv_bn_(net.globalmodel).half()
        self.model = net

    def forward(self, image: Tensor) -> Tensor:
        net: Any = self.model
        f3, f4 = net.forward_features(image.half())
        return l2n(net.forward_head(f3.float(), f4.float()), dim=1)


@dataclass
class ExportInfo:
    path: str
    opset: int
    exporter: str
    precision: str
    input_shape: list[int | str]
    output_shape: list[int | str]
    embedding_dim: int
    min_cosine_required: float
    cosines: dict[str, float] = field(default_factory=dict)
    min_cosine: float = float("nan")
    export_seconds: float = 0.0
    parity_seconds: float = 0.0
    file_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape_name(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _graph_io_shape(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]


def _finalise_graph(path: Path, props: dict[str, str]) -> tuple[list[int | str], list[int | str]]:
    """Add metadata, drop per-node doc strings, re-save as one file and run the full checker."""
    import onnx

    graph_model = onnx.load(str(path))
    for node in graph_model.graph.node:
        node.doc_string = ""
    onnx.helper.set_model_props(graph_model, props)
    # One self-contained file: R50/R101 fp32 are ~110/180 MB, far below protobuf's 2 GB.
    onnx.save_model(graph_model, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    inputs = [i for i in graph_model.graph.input]
    outputs = list(graph_model.graph.output)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise RuntimeError(
            f"unexpected graph I/O: inputs {[i.name for i in inputs]}, "
            f"outputs {[o.name for o in outputs]}"
        )
    return _graph_io_shape(inputs[0]), _graph_io_shape(outputs[0])


@torch.no_grad()
def check_parity(
    onnx_path: str | os.PathLike[str],
    model: nn.Module,
    shapes: Sequence[Sequence[int]] = PARITY_SHAPES,
    min_cosine: float = FP32_MIN_COSINE,
    seed: int = 0,
) -> dict[str, float]:
    """Run the graph with onnxruntime (CPU EP) and l2n(model(x)) with torch on random inputs of
    each shape; return the smallest per-vector cosine per shape. Raise ExportParityError when
    any is below `min_cosine`, is NaN, or an output is not unit length."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    reference = EmbeddingGraph(model).eval()
    device = next(model.parameters()).device
    cosines: dict[str, float] = {}
    for shape in shapes:
        x = torch.randn(*shape, generator=generator)
        expected = reference(x.to(device)).cpu().numpy().astype(np.float64)  # [B,D]
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0].astype(np.float64)
        if got.shape != expected.shape:
            raise ExportParityError(
                f"shape {_shape_name(shape)}: ORT gave {got.shape}, torch {expected.shape}"
            )
        norms = np.linalg.norm(got, axis=1)
        cos = (got * expected).sum(axis=1) / (norms * np.linalg.norm(expected, axis=1))
        worst = float(np.min(cos))
        cosines[_shape_name(shape)] = worst
        if not worst >= min_cosine or not np.all(np.abs(norms - 1.0) < 1e-2):
            raise ExportParityError(
                f"onnxruntime vs torch on input {_shape_name(shape)}: min cosine {worst:.6f} "
                f"(required >= {min_cosine}), output norms {norms.round(4).tolist()}; "
                "the exported graph does not reproduce the model"
            )
    return cosines


def export_onnx(
    model: nn.Module,
    out_path: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    parity_shapes: Sequence[Sequence[int]] = PARITY_SHAPES,
    min_cosine: float | None = None,
    seed: int = 0,
    extra_props: dict[str, str] | None = None,
) -> ExportInfo:
    """Export `model` (forward -> un-normalised [B,D]) to one .onnx file and verify it.

    The graph is written to a temp file beside `out_path` and moved into place only after
    `onnx.checker` (full_check) and the parity check pass, so a failed export never leaves a
    half-good model behind. Returns per-shape cosines and timings. `extra_props` are added
    to the graph's metadata (e.g. which SuperGlobal modules were applied).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if min_cosine is None:
        min_cosine = FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE
    required = min_cosine
    was_training = model.training
    model.eval()
    graph = (HalfBackboneEmbeddingGraph(model) if fp16 else EmbeddingGraph(model)).eval()
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # The legacy-exporter deprecation notice: we chose it on purpose (module docstring).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # EfficientNet's run-time "SAME" padding becomes Slice ops with dynamic bounds,
            # which the exporter cannot constant-fold; the graph is right (parity below).
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                graph,
                (torch.randn(*TRACE_SHAPE, device=next(model.parameters()).device),),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch"},
                },
                do_constant_folding=True,
            )
        config = getattr(model, "config", None)
        props = {
            "producer": "dolg-simsearch models.export",
            "precision": "fp16" if fp16 else "fp32",
            "l2_normalized": "true",
            "config": (
                json.dumps(config.to_dict())
                if config is not None and hasattr(config, "to_dict")
                else ""
            ),
            **(extra_props or {}),
        }
        input_shape, output_shape = _finalise_graph(tmp, props)
        export_seconds = time.perf_counter() - start
        start = time.perf_counter()
        cosines = check_parity(tmp, model, parity_shapes, required, seed)
        parity_seconds = time.perf_counter() - start
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    info = ExportInfo(
        path=str(out_path),
        opset=opset,
        exporter="torch.onnx.export(dynamo=False)",
        precision="fp16" if fp16 else "fp32",
        input_shape=input_shape,
        output_shape=output_shape,
        embedding_dim=int(output_shape[-1]),
        min_cosine_required=required,
        cosines=cosines,
        min_cosine=min(cosines.values()) if cosines else float("nan"),
        export_seconds=round(export_seconds, 3),
        parity_seconds=round(parity_seconds, 3),
        file_bytes=out_path.stat().st_size,
    )
    logger.info(
        "exported %s (%s, opset %d, %.1f MB) in %.1f s; parity min cosine %.7f over %s",
        out_path.name,
        info.precision,
        opset,
        info.file_bytes / 1e6,
        export_seconds,
        info.min_cosine,
        list(cosines),
    )
    return info
