"""Startup refuses, with a message naming the file or folder, when the pieces disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.errors import ArtifactMismatch
from app.inference.session import GpuUnavailableError
from app.metrics import Metrics
from app.runtime import Runtime
from workbench.artifacts.tiny_model import write_tiny_model


def _start(data_dir: Path, model_dir: Path, **kw: object) -> Runtime:
    return Runtime.start(Settings(data_dir=data_dir, model_dir=model_dir, **kw), Metrics())


def test_store_of_another_dimension_is_refused(tmp_path: Path) -> None:
    rt = _start(tmp_path, write_tiny_model(tmp_path / "m32", dim=32))
    rt.store.add(["a"], np.eye(1, 32, dtype=np.float32), [None])
    rt.close()
    with pytest.raises(ArtifactMismatch, match="store"):
        _start(tmp_path, write_tiny_model(tmp_path / "m16", dim=16))


def test_store_of_another_model_is_refused(tmp_path: Path) -> None:
    rt = _start(tmp_path, write_tiny_model(tmp_path / "m1", dim=32))
    rt.store.add(["a"], np.eye(1, 32, dtype=np.float32), [None])
    rt.close()
    other = tmp_path / "m2"
    write_tiny_model(other, dim=32)
    # Same shape, different weights: a different graph hash.
    from workbench.artifacts.tiny_model import build_tiny_onnx

    build_tiny_onnx(other / "model.onnx", 32, seed=1)
    meta_path = other / "model_meta.json"
    from app.artifacts import ModelMeta, save_model_meta, sha256_file

    meta = ModelMeta.model_validate_json(meta_path.read_text())
    save_model_meta(
        meta.model_copy(update={"onnx_sha256": sha256_file(other / "model.onnx")}), other
    )
    with pytest.raises(ArtifactMismatch):
        _start(tmp_path, other)


def test_require_gpu_fails_on_a_cpu_machine(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a GPU provider")
    with pytest.raises(GpuUnavailableError, match="GPU"):
        _start(tmp_path, write_tiny_model(tmp_path / "m"), require_gpu=True)


def test_missing_model_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMismatch, match=r"model_meta\.json"):
        _start(tmp_path, tmp_path / "nothing-here")


def test_cpu_sessions_batch_at_most_cpu_max_batch(tmp_path: Path) -> None:
    """On the CPU stacking images costs CPU per image; the pixel chain comes from the meta
    unless the setting overrides it."""
    from app.config import InferenceSettings

    model = write_tiny_model(tmp_path / "m")
    for cpu_max_batch, chain in ((1, "auto"), (4, "fast")):
        inference = InferenceSettings(
            providers="cpu",
            max_batch=8,
            cpu_max_batch=cpu_max_batch,
            decode_threads=2,
            pixel_chain=chain,
        )
        rt = _start(tmp_path / f"d{cpu_max_batch}", model, inference=inference)
        try:
            assert rt.batcher.max_batch == cpu_max_batch
            assert rt.embedder.chain == ("official" if chain == "auto" else chain)
            assert rt.embedder._many_in_flight == max(cpu_max_batch, 3)  # 2 decoders + 1
        finally:
            rt.close()
