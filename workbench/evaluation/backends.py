"""The network behind an evaluation: the exported ONNX artifact through the service's session,
or a torch checkpoint (official or ours), each with the preprocessing to use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts import Preprocessing, load_model_meta
from app.config import InferenceSettings

RunFn = Callable[[np.ndarray], np.ndarray]
# models.layers.functional.SUPERGLOBAL_GEM_P, repeated so that ONNX evaluation needs no torch.
SUPERGLOBAL_GEM_P = 4.6


@dataclass
class Backend:
    """The network behind one evaluation: a per-scale runner and the preprocessing to use."""

    run: RunFn  # [B,3,H,W] float32 -> [B,D] float32 unit rows
    prep: Preprocessing
    dim: int | None  # None: a checkpoint whose config does not say
    identity: dict[str, Any]  # what determines the descriptors (feature-cache key)
    info: dict[str, Any] = field(default_factory=dict)  # what the JSON reports


@dataclass(frozen=True)
class SuperGlobalModules:
    """SuperGlobal's descriptor modules for a torch checkpoint (an artifact has them in its
    graph): GeM+ fixed p, Regional-GeM on s4, ReLU+ in s1-s3."""

    gem_p: float | None = None
    rgem: bool = False
    relup: bool = False

    @property
    def enabled(self) -> bool:
        return self.gem_p is not None or self.rgem or self.relup


def onnx_backend(
    model_dir: Path,
    providers: str = "auto",
    threads: int = 0,
    prep_overrides: dict[str, Any] | None = None,
) -> Backend:
    from app.inference.session import OnnxSession

    meta = load_model_meta(model_dir)  # checks the graph's sha256 against the meta
    settings = InferenceSettings(
        providers=providers,  # type: ignore[arg-type]
        intra_op_threads=max(threads, 0),
    )
    session = OnnxSession(model_dir / meta.onnx_file, meta, settings)
    prep = meta.preprocessing.model_copy(update=prep_overrides or {})
    identity = {"backend": "onnx", "onnx_sha256": meta.onnx_sha256}
    info = {
        "backend": "onnx",
        "name": meta.name,
        "version": meta.version,
        "architecture": meta.architecture,
        "depth": meta.depth,
        "precision": meta.precision,
        "onnx_sha256": meta.onnx_sha256,
        "source": meta.source.model_dump(mode="json"),
        "providers": list(session.active_providers),
        "device": session.device,
    }
    return Backend(session.run, prep, meta.embedding_dim, identity, info)


def torch_backend(
    checkpoint: Path,
    trusted: bool = False,
    device: str = "auto",
    threads: int = 0,
    superglobal: SuperGlobalModules = SuperGlobalModules(),
    prep_overrides: dict[str, Any] | None = None,
) -> Backend:
    import torch

    from models.checkpoint import build_model_from_checkpoint
    from models.evaluation.extract import TorchRunner
    from models.superglobal import SuperGlobalOptions, apply_superglobal_

    if threads > 0:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ckpt = build_model_from_checkpoint(checkpoint, trusted=trusted)
    options = SuperGlobalOptions(
        gem_p=superglobal.gem_p, rgem=superglobal.rgem, relup=superglobal.relup
    )
    apply_superglobal_(model, options)
    prep = Preprocessing(**{**(ckpt.preprocessing or {}), **(prep_overrides or {})})
    identity = {
        "backend": "torch",
        "checkpoint_sha256": ckpt.sha256,
        "superglobal": options.to_dict(),
    }
    info = {
        "backend": "torch",
        "checkpoint": ckpt.file_name,
        "kind": ckpt.kind,
        "checkpoint_sha256": ckpt.sha256,
        "epoch": ckpt.epoch,
        "config": ckpt.config.to_dict(),
        "superglobal": options.describe(),
        "device": str(device),
        "torch": torch.__version__,
    }
    return Backend(TorchRunner(model, device), prep, ckpt.config.reduction_dim, identity, info)
