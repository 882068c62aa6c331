"""The CUDA paths of the session on a real GPU: the provider is active, IO binding (device
buffers reused per shape) returns what the plain run returns, and the service reports CUDA.

Marked `gpu`: skipped where onnxruntime offers no CUDA execution provider (onnxruntime-gpu and
the CUDA libraries are needed). `workbench/gpu/proof.sh` runs them on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.config import InferenceSettings, Settings
from app.inference.session import CUDA, OnnxSession
from app.metrics import Metrics
from app.runtime import Runtime
from tests.app.onnx_models import TinyArtifact, reference_forward
from workbench.artifacts.tiny_model import write_tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers(),
        reason="onnxruntime offers no CUDAExecutionProvider here",
    ),
]


def _batch(b: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, 3, h, w)).astype(np.float32)


def test_cuda_is_active_and_matches_the_closed_form(tiny_artifact: TinyArtifact) -> None:
    session = OnnxSession(
        tiny_artifact.model_path,
        tiny_artifact.meta,
        InferenceSettings(providers="cuda"),
        require_gpu=True,
    )
    assert session.device == "cuda" and session.active_providers[0] == CUDA
    assert session.io_binding  # on by default on a GPU provider
    batch = _batch(3, 11, 13, seed=0)
    expected = reference_forward(batch, tiny_artifact.weight, tiny_artifact.bias)
    # TF32 convolutions may round inputs to 10-bit mantissas: unit vectors agree to ~1e-3.
    np.testing.assert_allclose(session.run(batch), expected, atol=2e-3)


def test_io_binding_on_the_gpu_matches_plain_runs(tiny_artifact: TinyArtifact) -> None:
    settings = InferenceSettings(providers="cuda")
    bound = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta, settings, io_binding=True)
    plain = OnnxSession(tiny_artifact.model_path, tiny_artifact.meta, settings, io_binding=False)
    shapes = [(2, 11, 13), (1, 9, 17), (2, 11, 13), (8, 32, 24), (2, 11, 13)]
    for seed, shape in enumerate(shapes):  # repeated shapes reuse their device buffer
        batch = _batch(*shape, seed=seed)
        np.testing.assert_allclose(bound.run(batch), plain.run(batch), atol=1e-5)
    assert len(bound._bound_inputs) == 3
    assert all(v.device_name() == "cuda" for v in bound._bound_inputs.values())


def test_runtime_with_require_gpu_reports_cuda(tmp_path: Path) -> None:
    runtime = Runtime.start(
        Settings(
            data_dir=tmp_path / "data", model_dir=write_tiny_model(tmp_path / "m"), require_gpu=True
        ),
        Metrics(),
    )
    try:
        assert runtime.session.device == "cuda"
        assert CUDA in runtime.session.describe()["providers"]
        vector = runtime.embedder.embed_bytes_sync(_jpeg())
        assert vector.shape == (runtime.meta.embedding_dim,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    finally:
        runtime.close()


def _jpeg() -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()
