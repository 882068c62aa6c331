from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.config import InferenceSettings
from app.errors import ArtifactMismatch
from app.inference.session import CPU, CUDA, GpuUnavailableError, OnnxSession, choose_providers
from tests.app.onnx_models import (
    TinyArtifact,
    build_onnx,
    make_meta,
    reference_forward,
    write_artifact,
)


def _batch(b: int = 2, h: int = 11, w: int = 13, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, 3, h, w)).astype(np.float32)


def test_auto_selects_cpu_on_this_machine(tiny_artifact: TinyArtifact) -> None:
    session = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                          InferenceSettings(providers="auto"), intra_op_threads=1)
    assert session.active_providers == [CPU]
    assert session.device == "cpu"
    assert session.intra_op_threads == 1 and session.inter_op_threads == 1
    assert session.describe()["providers"] == [CPU]
    assert session.max_batch is None  # dynamic batch axis


def test_intra_op_threads_default_to_usable_cores(tiny_artifact: TinyArtifact) -> None:
    session = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                          InferenceSettings(providers="cpu", intra_op_threads=0))
    assert session.intra_op_threads >= 1


def test_run_matches_closed_form(tiny_session: OnnxSession, tiny_artifact: TinyArtifact) -> None:
    batch = _batch(3)
    out = tiny_session.run(batch)
    assert out.shape == (3, tiny_artifact.meta.embedding_dim) and out.dtype == np.float32
    expected = reference_forward(batch, tiny_artifact.weight, tiny_artifact.bias)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Rows of a batch equal single runs.
    singles = np.concatenate([tiny_session.run(batch[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(out, singles, atol=1e-6)


def test_run_rejects_wrong_rank(tiny_session: OnnxSession) -> None:
    with pytest.raises(ValueError, match="B,3,H,W"):
        tiny_session.run(np.zeros((3, 8, 8), dtype=np.float32))


def test_normalises_outside_when_graph_does_not(
    tmp_path: Path, cpu_settings: InferenceSettings
) -> None:
    art = write_artifact(tmp_path, l2_in_graph=False)
    session = OnnxSession(art.model_path, art.meta, cpu_settings)
    batch = _batch(2)
    out = session.run(batch)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, reference_forward(batch, art.weight, art.bias), atol=1e-5)


def test_require_gpu_fails_clearly_on_cpu(tiny_artifact: TinyArtifact) -> None:
    with pytest.raises(GpuUnavailableError, match="require_gpu"):
        OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                    InferenceSettings(providers="auto"), require_gpu=True)


def test_cuda_requested_but_unavailable_degrades_loudly(
    tiny_artifact: TinyArtifact, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.inference.session"):
        session = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                              InferenceSettings(providers="cuda"))
    assert session.device == "cpu" and session.active_providers == [CPU]
    assert "not available" in caplog.text and "degrading to CPU" in caplog.text


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_gpu_listed_but_not_activated_is_detected(
    tiny_artifact: TinyArtifact, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The onnxruntime build claims CUDA, but the session comes up on CPU only (what happens
    # when the CUDA libraries are missing): /health must report CPU, require_gpu must fail.
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    with caplog.at_level(logging.WARNING, logger="app.inference.session"):
        session = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                              InferenceSettings(providers="auto"))
    assert session.requested_providers == [CUDA, CPU]
    assert session.active_providers == [CPU] and session.device == "cpu"
    assert "not active" in caplog.text
    with pytest.raises(GpuUnavailableError):
        OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                    InferenceSettings(providers="cuda"), require_gpu=True)


def test_choose_providers_orders_and_filters() -> None:
    settings = InferenceSettings(cudnn_conv_algo_search="DEFAULT")
    avail = ["TensorrtExecutionProvider", CUDA, CPU]
    assert choose_providers("cpu", avail, settings) == [CPU]
    auto = choose_providers("auto", avail, settings)
    assert auto == [(CUDA, {"cudnn_conv_algo_search": "DEFAULT"}), CPU]
    trt = choose_providers("tensorrt", avail, settings)
    assert trt[0] == "TensorrtExecutionProvider" and trt[-1] == CPU
    assert choose_providers("tensorrt", [CPU], settings) == [CPU]


# ----------------------------------------------------------------- graph vs meta checks


def _mismatch(tmp_path: Path, graph_kw: dict, meta_kw: dict) -> str:
    path = tmp_path / "model.onnx"
    build_onnx(path, **graph_kw)
    meta = make_meta(path, **meta_kw)
    with pytest.raises(ArtifactMismatch) as info:
        OnnxSession(path, meta, InferenceSettings(providers="cpu", intra_op_threads=1))
    message = str(info.value)
    assert "model.onnx" in message  # names the file
    return message


def test_mismatch_input_name(tmp_path: Path) -> None:
    assert "'pixels'" in _mismatch(tmp_path, {"input_name": "pixels"}, {})


def test_mismatch_output_name(tmp_path: Path) -> None:
    assert "no output 'embedding'" in _mismatch(tmp_path, {"output_name": "desc"}, {})


def test_mismatch_embedding_dim(tmp_path: Path) -> None:
    assert "16 dimensions" in _mismatch(tmp_path, {"dim": 16}, {"dim": 512})


def test_mismatch_embedding_dim_when_declared_symbolic(tmp_path: Path) -> None:
    # onnxruntime infers the 16 through the graph even though the output declares "dim".
    message = _mismatch(tmp_path, {"dim": 16, "output_shape": ["batch", "dim"]}, {"dim": 8})
    assert "16 dimensions" in message and "8" in message


def test_mismatch_found_by_probe_when_dim_depends_on_input(
    tmp_path: Path, tiny_artifact: TinyArtifact
) -> None:
    # Output [batch, height]: no static dim to compare, so the session runs one probe image.
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["embedding"], axes=[1, 3], keepdims=0)],
        "height_as_dim",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", "height"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ArtifactMismatch, match=r"shape \(1, 32\) for one image"):
        OnnxSession(path, make_meta(path), InferenceSettings(providers="cpu"))


def test_mismatch_fixed_spatial_axes(tmp_path: Path) -> None:
    assert "dynamic" in _mismatch(tmp_path, {"input_shape": [1, 3, 224, 224]}, {})


def test_mismatch_unreadable_graph(tmp_path: Path, tiny_artifact: TinyArtifact) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ArtifactMismatch, match=r"model\.onnx"):
        OnnxSession(path, tiny_artifact.meta, InferenceSettings(providers="cpu"))
    with pytest.raises(ArtifactMismatch, match="not found"):
        OnnxSession(tmp_path / "missing.onnx", tiny_artifact.meta, InferenceSettings())


def test_fixed_batch_axis_is_reported(tmp_path: Path, cpu_settings: InferenceSettings) -> None:
    path = tmp_path / "model.onnx"
    build_onnx(path, input_shape=[1, 3, "height", "width"], output_shape=[1, 16])
    session = OnnxSession(path, make_meta(path), cpu_settings)
    assert session.max_batch == 1
    assert session.run(_batch(1)).shape == (1, 16)
    with pytest.raises(ValueError, match="at most 1"):
        session.run(_batch(2))


def test_io_binding_path_matches_plain_run(tiny_artifact: TinyArtifact) -> None:
    """The GPU path (IO binding, device buffers reused per shape), run with host buffers."""
    plain = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                        InferenceSettings(providers="cpu"), intra_op_threads=1)
    bound = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta,
                        InferenceSettings(providers="cpu"), intra_op_threads=1, io_binding=True)
    assert not plain.io_binding and bound.io_binding and bound.describe()["io_binding"]
    for seed, shape in enumerate([(2, 11, 13), (1, 9, 17), (2, 11, 13), (3, 11, 13)]):
        batch = _batch(*shape, seed=seed)  # a repeated shape reuses its buffer
        np.testing.assert_allclose(bound.run(batch), plain.run(batch), atol=1e-6)
    assert len(bound._bound_inputs) == 3
