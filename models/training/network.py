"""The trained network: descriptor model + margin head, heads by name, weight initialisation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from models.checkpoint import (
    CHECKPOINT_FORMAT,
    build_model_from_checkpoint,
    detect_backbone_source,
    extract_state_dict,
    load_backbone_weights,
    load_file,
)
from models.dolg import DOLGConfig
from models.factory import build_model
from models.heads import ArcFace, CurricularFace, MadaCos

logger = logging.getLogger(__name__)

HeadName = Literal["curricularface", "arcface", "madacos"]
HEADS: tuple[HeadName, ...] = ("curricularface", "arcface", "madacos")
InitFormat = Literal["auto", "torchvision", "pycls", "dolg", "ours"]


def build_head(
    name: str,
    in_features: int,
    num_classes: int,
    *,
    scale: float = 30.0,
    margin: float = 0.15,
    alpha: float = 0.02,
    b_mode: str = "default",
) -> nn.Module:
    """CurricularFace (the official DOLG head), ArcFace or MadaCos (CFCD); MadaCos derives its
    scale and margin from each batch, so `scale` and `margin` do not apply to it."""
    if name == "curricularface":
        return CurricularFace(in_features, num_classes, scale=scale, margin=margin)
    if name == "arcface":
        return ArcFace(in_features, num_classes, scale=scale, margin=margin)
    if name == "madacos":
        return MadaCos(in_features, num_classes, alpha=alpha, b_mode=b_mode)  # type: ignore[arg-type]
    raise ValueError(f"unknown head {name!r}; expected one of {HEADS}")


class TrainNet(nn.Module):
    """(images [B,3,S,S], targets [B]) -> margin logits [B,C]; the unit DDP wraps.

    The descriptor network may run under autocast; the head always runs in float32, because
    cos(theta + m) and the adaptive scales need the precision and C can be ~81k wide.
    """

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, images: Tensor, targets: Tensor) -> Tensor:
        descriptors = self.model(images)  # [B,D], un-normalised
        with torch.autocast(device_type=descriptors.device.type, enabled=False):
            return self.head(descriptors.float(), targets)


def _is_full_model(obj: Any) -> bool:
    """Our checkpoint or an official DOLG one (not a backbone-only ImageNet file)."""
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return True
    state = extract_state_dict(obj)
    has_backbone = any(k.startswith("globalmodel.") for k in state)
    return "localmodel.conv1.weight" in state or ("fc.weight" in state and has_backbone)


def initialise_model(
    config: DOLGConfig,
    init_weights: str | os.PathLike[str] | None,
    init_format: InitFormat = "auto",
    input_colour: Literal["BGR", "RGB"] = "BGR",
    trusted: bool = False,
) -> tuple[nn.Module, DOLGConfig, dict[str, Any]]:
    """Build the descriptor network and initialise it.

    - no file: random (pycls) initialisation with `config`;
    - a whole DOLG model (`dolg`: an official checkpoint; `ours`: one of our checkpoints):
      the file's own config wins (depth, multi-atrous and dimension come from its keys); the
      margin head in it is dropped, since its classes are not ours;
    - a backbone (`torchvision` or `pycls` ImageNet weights): `config`'s network with the
      ResNet replaced; the stem is channel-flipped when the weights' colour order differs
      from `input_colour` (torchvision weights are RGB, pycls ones BGR).
    Returns (model in train mode, the config actually used, a report for the log/checkpoint).
    """
    if init_weights is None:
        model = build_model(config)
        return model.train(), config, {"source": "scratch"}
    path = Path(init_weights)
    kind = init_format
    if kind == "auto":
        obj = load_file(path, trusted=trusted)
        full = _is_full_model(obj)
        kind = "dolg" if full else detect_backbone_source(extract_state_dict(obj))
    if kind in ("dolg", "ours"):
        model, info = build_model_from_checkpoint(path, trusted=trusted)
        if info.config != config:
            logger.warning(
                "initialising from %s: using its config %s instead of the requested %s",
                path.name, info.config.to_dict(), config.to_dict(),
            )
        report = {"source": info.kind, "file_name": info.file_name, "sha256": info.sha256,
                  "dropped_keys": len(info.dropped_keys)}
        return model.train(), info.config, report
    model = build_model(config)
    report = load_backbone_weights(model, path, source=kind,  # type: ignore[arg-type]
                                   input_colour=input_colour, trusted=trusted)
    return model.train(), config, report
