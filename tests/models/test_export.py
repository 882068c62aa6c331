"""ONNX export: graph contract, onnxruntime parity with torch, fp16 variant, failure handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models import export as E
from models.calibrate import calibrate_batchnorm
from models.dolg import DOLG, DOLGConfig
from models.layers.functional import l2n

pytestmark = pytest.mark.torch

TINY_SHAPES = ((1, 3, 67, 45), (2, 3, 33, 47), (1, 3, 40, 97))


@pytest.fixture(scope="module")
def model() -> DOLG:
    torch.manual_seed(0)
    net = DOLG(DOLGConfig(depth=50)).eval()
    # Sane BN statistics, as the random-init artifact has (and fp16 needs).
    calibrate_batchnorm(net, (torch.randn(1, 3, 64, 48) for _ in range(2)))
    return net


@pytest.fixture(scope="module")
def exported(model: DOLG, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, E.ExportInfo]:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, E.export_onnx(model, path, parity_shapes=TINY_SHAPES)


@pytest.fixture(scope="module")
def exported_fp16(
    model: DOLG, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, E.ExportInfo]:
    path = tmp_path_factory.mktemp("onnx16") / "model.onnx"
    return path, E.export_onnx(model, path, fp16=True, parity_shapes=TINY_SHAPES[:2])


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_info(exported: tuple[Path, E.ExportInfo]) -> None:
    path, info = exported
    assert info.opset == E.DEFAULT_OPSET == 17 and info.precision == "fp32"
    assert info.input_shape == ["batch", 3, "height", "width"]
    assert info.output_shape == ["batch", 512] and info.embedding_dim == 512
    assert set(info.cosines) == {"1x3x67x45", "2x3x33x47", "1x3x40x97"}
    assert info.min_cosine >= 0.9999 and info.file_bytes == path.stat().st_size
    # One self-contained file, nothing else left in the folder (no external data, no temp).
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]


def test_graph_contract(exported: tuple[Path, E.ExportInfo]) -> None:
    path, _ = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert inp.name == "image" and out.name == "embedding"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == [
        "batch", 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 512]
    ops = {n.op_type for n in graph.graph.node}
    assert "BatchNormalization" not in ops  # folded into the convs
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["l2_normalized"] == "true" and props["precision"] == "fp32"
    # No source locations (TorchScript writes "file.py(123): forward") or paths of this machine.
    assert all(n.doc_string == "" for n in graph.graph.node)
    repo_root = str(Path(__file__).resolve().parents[2]).encode()
    assert repo_root not in path.read_bytes()


@pytest.mark.parametrize("shape", [(1, 3, 33, 33), (3, 3, 71, 38)])
def test_ort_matches_torch_on_other_shapes(exported: tuple[Path, E.ExportInfo], model: DOLG,
                                           shape: tuple[int, ...]) -> None:
    path, _ = exported
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = l2n(model(x), dim=1).numpy()
    got = _session(path).run(["embedding"], {"image": x.numpy()})[0]
    assert got.shape == (shape[0], 512) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * expected).sum(axis=1).min() >= 0.9999


def test_fp16_graph_runs_with_float32_io(
    exported_fp16: tuple[Path, E.ExportInfo], model: DOLG
) -> None:
    path, info = exported_fp16
    assert info.precision == "fp16" and info.min_cosine >= E.FP16_MIN_COSINE
    graph = onnx.load(str(path))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 53  # every backbone conv (BN folded) is stored in half precision
    x = torch.randn(1, 3, 50, 61)
    got = _session(path).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = l2n(model(x), dim=1).numpy()
    assert got.dtype == np.float32 and float((got * expected).sum()) >= E.FP16_MIN_COSINE


def test_parity_failure_is_reported(exported: tuple[Path, E.ExportInfo]) -> None:
    path, _ = exported
    torch.manual_seed(123)
    other = DOLG(DOLGConfig(depth=50)).eval()
    calibrate_batchnorm(other, [torch.randn(1, 3, 64, 48)])
    with pytest.raises(E.ExportParityError, match="min cosine"):
        E.check_parity(path, other, shapes=[(1, 3, 40, 40)])


def test_failed_export_leaves_nothing_behind(model: DOLG, tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(E.ExportParityError):
        E.export_onnx(model, target, parity_shapes=[(1, 3, 40, 40)], min_cosine=1.5)
    assert list(tmp_path.iterdir()) == []
    assert not model.training
