"""Schemas of the files that couple the offline `models` package and the service.

`model_meta.json` sits beside `model.onnx` and describes everything the service needs to run the
graph exactly like the official extraction (docs/ALGORITHMS.md 1.7): the service hard-codes no
preprocessing numbers. `workbench/export.py` writes it through `ModelMeta`; the service reads it
through `load_model_meta`. The store's `manifest.json` is described by `StoreManifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.errors import ArtifactMismatch

MODEL_FILE = "model.onnx"
META_FILE = "model_meta.json"
META_SCHEMA_VERSION: Literal[1] = 1

# Official DOLG extraction: 5 scales, ImageNet constants in BGR order (docs/ALGORITHMS.md 1.7).
OFFICIAL_SCALES = (0.3535, 0.5, 0.7071, 1.0, 1.4142)
BGR_MEAN = (0.406, 0.456, 0.485)
BGR_STD = (0.225, 0.224, 0.229)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output."""

    name: str
    dtype: Literal["float32"] = "float32"
    # Symbolic axes are strings ("batch", "height", "width"); fixed ones are ints.
    shape: list[int | str]


class Preprocessing(_Strict):
    """How an uploaded image becomes the graph's input tensors and one descriptor.

    Per scale s: resize to (round(w*s), round(h*s)) with `interpolation`, divide by
    `pixel_divisor`, subtract `mean` and divide by `std` (both in `colour_order`), lay out as
    NCHW. Per-scale outputs are L2-normalised (when `per_scale_l2`), pooled over scales with
    `scale_pooling` and L2-normalised again.
    """

    colour_order: Literal["BGR", "RGB"] = "BGR"
    mean: tuple[float, float, float] = BGR_MEAN
    std: tuple[float, float, float] = BGR_STD
    pixel_divisor: float = 255.0
    # Long-side cap applied once to the decoded image, before any crop or scale.
    # The official benchmarks never trigger it (their images are <= 1024 px).
    max_side: int = Field(default=1024, ge=32, le=8192)
    scales: tuple[float, ...] = OFFICIAL_SCALES
    # "bilinear": cv2.INTER_LINEAR semantics (half-pixel centres, no antialiasing), as the
    # official extraction does even when downscaling. "bicubic": cv2.INTER_CUBIC semantics
    # (a = -0.75), what EfficientNet's ImageNet weights were trained with.
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    per_scale_l2: bool = True
    # "mean": official DOLG (sum / n then l2n); "max": SuperGlobal's Scale-GeM default.
    scale_pooling: Literal["mean", "max"] = "mean"
    # Smallest side a scaled image may have; smaller scales are skipped for tiny images.
    min_side: int = Field(default=16, ge=1)
    # How pixels get from the upload to the scales (app/inference/working.py):
    # "official": full decode, Pillow LANCZOS long-side cap, then `interpolation` with cv2
    #   semantics on float planes (no antialiasing): what the official DOLG extraction computes.
    # "fast": JPEG DCT-scaled decode to the smallest 1/2^k still covering the cap, then Pillow
    #   antialiased bicubic on uint8 for the cap and every scale (what torchvision / timm
    #   training transforms compute on PIL images). For models without an exact-parity need.
    pixel_chain: Literal["official", "fast"] = "official"

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError("scales must be a non-empty list of positive numbers")
        if any(v <= 0 for v in self.std):
            raise ValueError("std must be positive")
        return self


class SourceInfo(_Strict):
    """Where the weights came from, so /health can say it honestly."""

    kind: Literal["official", "ours", "random-init", "imagenet-init"]
    checkpoint: str | None = None  # file name only, never a path of the exporting machine
    checkpoint_sha256: str | None = None
    seed: int | None = None
    epoch: int | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class ModelMeta(_Strict):
    """The graph's contract (input, output, preprocessing) plus descriptive facts.

    `architecture` (the model family, e.g. "dolg", "pooled") and `backbone` (e.g. "resnet50",
    "efficientnet_lite0") are descriptive strings shown in /health, not a closed list: the
    service runs any graph that honours the contract. `depth` is the ResNet depth where one
    applies.
    """

    schema_version: Literal[1] = META_SCHEMA_VERSION
    name: str
    version: str
    architecture: str = Field(default="dolg", min_length=1, max_length=64)
    backbone: str = Field(default="", max_length=64)
    depth: int | None = None
    with_ma: bool = False
    onnx_file: str = MODEL_FILE
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int = Field(ge=13)
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    input: TensorSpec
    output: TensorSpec
    embedding_dim: int = Field(gt=0)
    l2_normalized_in_graph: bool = True
    preprocessing: Preprocessing = Preprocessing()
    source: SourceInfo
    # Free text shown in /health: what this model is good for.
    intended_use: str = ""


class StoreManifest(_Strict):
    """`store/manifest.json`: the last good snapshot of the derived FAISS index.

    Written last and atomically; the catalog and the exact vectors are the source of truth.
    """

    format_version: Literal[1] = 1
    generation: int = Field(ge=0)
    dim: int = Field(gt=0)
    index_type: Literal["flat", "ivfpq"]
    index_file: str | None = None
    index_params: dict[str, Any] = Field(default_factory=dict)
    # Vector rows [0, rows_covered) are in the snapshot; later rows are replayed from the catalog.
    rows_covered: int = Field(ge=0)
    ntrained_on: int = Field(default=0, ge=0)
    model_sha256: str | None = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """temp file in the same folder -> fsync -> os.replace -> fsync(dir)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model_meta(meta: ModelMeta, directory: Path) -> Path:
    path = directory / META_FILE
    write_json_atomic(path, meta.model_dump(mode="json"))
    return path


def load_model_meta(directory: Path, verify_sha: bool = True) -> ModelMeta:
    """Read and validate `model_meta.json`; raise ArtifactMismatch naming the file otherwise."""
    path = directory / META_FILE
    if not path.is_file():
        raise ArtifactMismatch(
            f"{path}: model meta not found (export a model with `python -m workbench.export`)"
        )
    try:
        meta = ModelMeta.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError) as exc:
        raise ArtifactMismatch(f"{path}: invalid model meta: {exc}") from exc
    onnx_path = directory / meta.onnx_file
    if not onnx_path.is_file():
        raise ArtifactMismatch(f"{onnx_path}: ONNX graph named by {path} is missing")
    if verify_sha:
        actual = sha256_file(onnx_path)
        if actual != meta.onnx_sha256:
            raise ArtifactMismatch(
                f"{path}: onnx_sha256 {meta.onnx_sha256[:12]}... does not match {onnx_path} "
                f"({actual[:12]}...); re-export the model"
            )
    return meta
