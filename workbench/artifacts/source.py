"""The network to export and where it came from: a checkpoint (its family read from it), or a
family built from the options with ImageNet or fixed random weights."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn

from app.artifacts import SourceInfo
from models.backbones import get_backbone_spec
from models.checkpoint import build_model_from_checkpoint
from models.factory import ModelConfig, build_model, config_from_flags, load_imagenet_backbone_
from models.model_flags import ModelFlags
from workbench.artifacts.options import ExportOptions


def model_config(options: ExportOptions) -> ModelConfig:
    # The export options are ModelFlags (plus the rest of the export's flags); only the model
    # flags go on, so a config never depends on, say, the precision asked for.
    flags = ModelFlags(**{f.name: getattr(options, f.name) for f in fields(ModelFlags)})
    return config_from_flags(options.architecture, flags)


def load_network(
    options: ExportOptions,
) -> tuple[nn.Module, ModelConfig, SourceInfo, dict[str, Any]]:
    """(model, config, source, preprocessing fields stored in the checkpoint or expected by
    the backbone's ImageNet weights)."""
    if options.checkpoint:
        model, info = build_model_from_checkpoint(options.checkpoint, trusted=options.trusted)
        source = SourceInfo(
            kind=info.kind,
            checkpoint=info.file_name,
            epoch=info.epoch,
            checkpoint_sha256=info.sha256,
            config=info.config.to_dict(),
        )
        prep = dict(info.preprocessing or {})
        if not prep and info.config.backbone:
            prep = dict(get_backbone_spec(info.config.backbone_name).preprocessing)
        return model, info.config, source, prep
    torch.manual_seed(options.seed)
    config = model_config(options)
    model = build_model(config).eval()
    spec = get_backbone_spec(config.backbone_name)
    if options.imagenet:
        load_imagenet_backbone_(model, config.backbone_name)
        source = SourceInfo(
            kind="imagenet-init",
            seed=options.seed,
            config=config.to_dict(),
            description=spec.description,
        )
    else:
        source = SourceInfo(kind="random-init", seed=options.seed, config=config.to_dict())
    return model, config, source, dict(spec.preprocessing)
