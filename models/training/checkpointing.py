"""Resumable training checkpoints in the project's self-describing format.

The file is `models.checkpoint`'s container (`format`, `family`, `config`, `preprocessing`,
`epoch`, `model_state`, `optimizer_state`, `scaler_state`, `head_state`), so `workbench/export.py
--checkpoint` and `build_model_from_checkpoint` read it as they read any of ours, plus:
- `cfg`: the training settings as JSON text (the pycls container's `cfg` slot);
- `training`: what `--resume` needs to continue exactly: the settings as a dict, the position
  (`epoch_index`, `step_in_epoch`, `global_step`), the world size, class names, the global
  torch RNG states, and the metric history.
Everything is plain tensors and containers, so the file loads with `weights_only=True`.
`epoch` is the number of completed epochs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import (
    CHECKPOINT_FORMAT,
    FAMILY_KEY,
    CheckpointError,
    atomic_torch_save,
    fsync_dir,
    load_file,
)
from models.factory import ModelConfig, config_family

logger = logging.getLogger(__name__)

TRAINING_KEY = "training"


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _to_cpu(obj: Any) -> Any:
    """Optimizer / scaler state with every tensor moved to the CPU (loadable anywhere)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    """Global torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def save_training_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    head: nn.Module,
    config: ModelConfig,
    preprocessing: Mapping[str, Any],
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    training: Mapping[str, Any],
    cfg_text: str = "",
) -> Path:
    """Write one resumable checkpoint atomically; returns its path."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        FAMILY_KEY: config_family(config),
        "config": config.to_dict(),
        "preprocessing": dict(preprocessing),
        "epoch": int(epoch),
        "model_state": _cpu_state(model),
        "optimizer_state": _to_cpu(optimizer.state_dict()),
        "scaler_state": _to_cpu(scaler.state_dict()) if scaler is not None else None,
        "head_state": _cpu_state(head),
        "cfg": cfg_text,
        TRAINING_KEY: {**dict(training), "rng": rng_state()},
    }
    atomic_torch_save(payload, path)
    return path


def load_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_training_checkpoint` (weights_only)."""
    obj = load_file(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{Path(path).name}: not one of our checkpoints (no `format`)")
    if not isinstance(obj.get(TRAINING_KEY), dict) or obj.get("head_state") is None:
        raise CheckpointError(
            f"{Path(path).name}: has no training state (`training`, `head_state`); "
            "it can initialise a run (--init-weights) but not resume one"
        )
    return obj


def link_atomic(source: Path, target: Path) -> None:
    """Make `target` the same file as `source` (hard link; a copy where links are impossible),
    replacing any previous `target` atomically."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
