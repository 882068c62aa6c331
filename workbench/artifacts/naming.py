"""The artifact's name and the `intended_use` text /health shows, written from its source."""

from __future__ import annotations

from app.artifacts import SourceInfo
from workbench.artifacts.options import ExportOptions


def default_name(arch: str, source: SourceInfo, seed: int) -> str:
    return {"random-init": f"{arch}-random-s{seed}", "imagenet-init": f"{arch}-imagenet"}.get(
        source.kind, arch
    )


def intended_use(options: ExportOptions, arch: str, source: SourceInfo) -> str:
    if source.kind == "imagenet-init":
        if not arch.startswith("pooled") or options.reduction_dim:
            return (
                f"{arch} with an ImageNet backbone and untrained heads: for pipeline tests "
                "and as a training start, not for search."
            )
        return (
            f"{arch}: ImageNet-pretrained backbone ({source.description}), pooled, no "
            "further training. For general visual similarity (related scenes, objects, "
            "textures) and copies (crops, re-encodings, colour edits). Not "
            "landmark-specialised: for landmark or instance retrieval export official DOLG "
            "weights or a DOLG trained on your data."
        )
    if source.kind != "random-init":
        label = "CFCD" if arch.startswith("cfcd") else "DOLG"
        return (
            f"{label} {arch} descriptor ({source.kind} weights, {source.checkpoint}): "
            "instance-level retrieval (landmarks, objects, near-duplicates)."
        )
    bn = (
        "BatchNorm statistics calibrated on the bundled photos"
        if options.calibrate_bn
        else "uncalibrated BatchNorm statistics (pipeline tests only)"
    )
    init = (
        " as the official trainer initialises (each block's last BN gamma = 0)"
        if options.zero_init_final_gamma
        else ""
    )
    return (
        f"Fixed random initialisation (seed {options.seed}){init}, never trained, with {bn}. "
        "Good for near-duplicate search only (copies, crops, re-encodings, colour edits); "
        "not for semantic or landmark retrieval."
    )
