"""Static int8 quantisation of an exported fp32 graph for CPU serving (onnxruntime.quantization).

    info = quantize_int8(fp32_onnx, out_onnx, calibration_inputs)

- Format QDQ (QuantizeLinear/DequantizeLinear pairs around each quantised op; onnxruntime's CPU
  provider fuses them into integer kernels at load time), activations uint8 (asymmetric),
  weights int8 per output channel, static ranges from MinMax calibration.
- `reduce_range=True` (7-bit weights) by default: on x86 CPUs without VNNI (AVX2 / AVX-512F
  only) onnxruntime's u8s8 kernels accumulate pairs in int16 and can saturate with full 8-bit
  weights; 7 bits avoid it (onnxruntime's quantisation docs). Pass False on VNNI/AMX CPUs.
- Scope "backbone" (default) quantises only the ResNet convolutions (`/model/globalmodel/`:
  nearly all FLOPs); the DOLG head (local branch convolutions, orthogonal fusion, GeM, the two
  Gemms and the final L2 norm) stays float32, where 8-bit steps would move the small orthogonal
  component and GeM's x^p most. Scope "all" quantises every Conv/Gemm/MatMul.
- Calibration inputs are [3,H,W] float32 tensors made by the service's own preprocessing
  (workbench/export.py feeds them from a folder of photos at the artifact's scales), one run
  each, so activation ranges match what the service will feed.

The result is checked against the fp32 graph on the calibration inputs (cosine per input).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Scope = Literal["backbone", "all"]
BACKBONE_PREFIX = "/model/globalmodel/"
# Below this, the int8 graph is broken (not merely imprecise): refuse to write it.
MIN_COSINE = 0.9


class QuantizationError(RuntimeError):
    """The quantised graph disagrees with the fp32 graph beyond MIN_COSINE."""


@dataclass
class QuantInfo:
    path: str
    scope: str
    method: str
    per_channel: bool
    reduce_range: bool
    calibration_inputs: int
    quantized_nodes: int
    seconds: float
    file_bytes: int
    # cosine(int8, fp32) over the calibration inputs: min and mean.
    cosine_min: float = float("nan")
    cosine_mean: float = float("nan")
    op_types: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reader(input_name: str, tensors: Sequence[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Inputs(CalibrationDataReader):
        """One [1,3,H,W] feed per calibration tensor (shapes may differ between feeds)."""

        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: np.ascontiguousarray(x[None], np.float32)}

        def rewind(self) -> None:
            self._it = iter(tensors)

    return _Inputs()


def _nodes_in_scope(model_path: Path, scope: Scope, op_types: Sequence[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type in op_types and (scope == "all" or n.name.startswith(BACKBONE_PREFIX))
    ]


def _cosines(fp32_path: Path, int8_path: Path, tensors: Sequence[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    ref = ort.InferenceSession(str(fp32_path), options, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    name = ref.get_inputs()[0].name
    out = []
    for x in tensors:
        feed = {name: np.ascontiguousarray(x[None], np.float32)}
        a = ref.run(None, feed)[0][0].astype(np.float64)
        b = q.run(None, feed)[0][0].astype(np.float64)
        out.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return np.asarray(out)


def quantize_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    scope: Scope = "backbone",
    per_channel: bool = True,
    reduce_range: bool = True,
    check_inputs: int = 16,
) -> QuantInfo:
    """Write a statically quantised copy of `fp32_path` to `out_path` and check it.

    calibration: [3,H,W] float32 network inputs (the service's preprocessing); all are used to
    collect activation ranges, the first `check_inputs` to compare with the fp32 graph.
    Written to a temp file beside `out_path` and moved into place only after the check passes.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 quantisation needs calibration inputs")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pre = out_path.with_name(f".{out_path.name}.pre-{os.getpid()}")
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    op_types = ["Conv", "Gemm", "MatMul"] if scope == "all" else ["Conv"]
    start = time.perf_counter()
    try:
        # Shape inference + graph cleanup recommended before static quantisation.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        nodes = _nodes_in_scope(pre, scope, op_types)
        quantize_static(
            str(pre),
            str(tmp),
            _reader(_input_name(pre), calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_quantize=nodes,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        seconds = time.perf_counter() - start
        cos = _cosines(fp32_path, tmp, calibration[:check_inputs])
        if not np.all(np.isfinite(cos)) or float(cos.min()) < MIN_COSINE:
            raise QuantizationError(
                f"int8 graph vs fp32 on calibration inputs: min cosine {float(cos.min()):.4f} "
                f"(required >= {MIN_COSINE}); not written"
            )
        os.replace(tmp, out_path)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    info = QuantInfo(
        path=str(out_path),
        scope=scope,
        method="static QDQ, MinMax",
        per_channel=per_channel,
        reduce_range=reduce_range,
        calibration_inputs=len(calibration),
        quantized_nodes=len(nodes),
        seconds=round(seconds, 1),
        file_bytes=out_path.stat().st_size,
        cosine_min=round(float(cos.min()), 6),
        cosine_mean=round(float(cos.mean()), 6),
        op_types=op_types,
    )
    logger.info(
        "int8 %s: %d %s nodes quantised in %.1f s; cosine to fp32 min %.5f mean %.5f",
        out_path.name,
        len(nodes),
        "/".join(op_types),
        seconds,
        info.cosine_min,
        info.cosine_mean,
    )
    return info


def _input_name(model_path: Path) -> str:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)
