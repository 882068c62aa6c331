"""Write the service's artifact: the network -> BN calibration -> SuperGlobal modules -> ONNX
(checked against torch, models.export) -> optional int8 -> model_meta.json (app.artifacts)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from app.artifacts import (
    MODEL_FILE,
    ModelMeta,
    Preprocessing,
    TensorSpec,
    save_model_meta,
    sha256_file,
)
from models.backbones import get_backbone_spec
from models.calibrate import calibrate_batchnorm
from models.export import export_onnx
from models.factory import family_of
from models.quantize import quantize_int8
from models.superglobal import SuperGlobalOptions, apply_superglobal_
from workbench.artifacts.calibration import calibration_batches, int8_calibration_inputs
from workbench.artifacts.naming import default_name, intended_use
from workbench.artifacts.options import ExportOptions
from workbench.artifacts.source import load_network

logger = logging.getLogger("export")


def superglobal_options(options: ExportOptions) -> SuperGlobalOptions:
    return SuperGlobalOptions(
        gem_p=options.superglobal_gem_p,
        rgem=options.superglobal_rgem,
        relup=options.superglobal_relup,
    )


def export_artifact(options: ExportOptions, out: Path) -> dict[str, Any]:
    """Writes out/model.onnx and out/model_meta.json; returns the summary the CLI prints."""
    out.mkdir(parents=True, exist_ok=True)
    model, config, source, prep_fields = load_network(options)
    overrides = {
        "scales": options.scales,
        "max_side": options.max_side,
        "scale_pooling": options.scale_pooling,
        "colour_order": options.colour_order,
        "mean": options.mean,
        "std": options.std,
        "interpolation": options.interpolation,
        "pixel_chain": options.pixel_chain,
    }
    prep_fields.update({k: v for k, v in overrides.items() if v})
    prep = Preprocessing(**prep_fields)
    summary: dict[str, Any] = {}
    if options.calibrate_bn:
        calib = prep.model_copy(
            update={
                "max_side": options.calib_max_side,
                "scales": options.calib_scales or prep.scales,
            }
        )
        start = time.perf_counter()
        batches = calibration_batches(options.calibrate_bn, calib, options.calib_limit)
        used = calibrate_batchnorm(model, batches)
        summary["calibration"] = {
            "batches": used,
            "max_side": calib.max_side,
            "scales": list(calib.scales),
            "seconds": round(time.perf_counter() - start, 1),
        }
        note = (
            f"BatchNorm statistics calibrated on {used} inputs from the images in "
            f"'{options.calibrate_bn.name}' (max side {calib.max_side}, scales "
            f"{list(calib.scales)})"
        )
        source = source.model_copy(update={"description": note})
    # Test-time modules go in after BN calibration: SuperGlobal applies them to trained
    # networks as they are, without re-estimating statistics.
    sg_options = superglobal_options(options)
    sg_props: dict[str, str] = {}
    if sg_options.enabled or prep.scale_pooling != "mean":
        apply_superglobal_(model, sg_options)
        sg_note = (
            f"SuperGlobal modules: {sg_options.describe()}; scale pooling "
            f"{prep.scale_pooling} (tuned on CVNet, not on DOLG)"
        )
        sg_props = {
            "superglobal": json.dumps({**sg_options.to_dict(), "scale_pooling": prep.scale_pooling})
        }
        description = "; ".join(d for d in (source.description, sg_note) if d)
        source = source.model_copy(update={"description": description})
        summary["superglobal"] = {**sg_options.to_dict(), "scale_pooling": prep.scale_pooling}
    graph_path = out / (f".{MODEL_FILE}.fp32" if options.int8 else MODEL_FILE)
    export = export_onnx(
        model, graph_path, opset=options.opset, fp16=options.fp16, extra_props=sg_props
    )
    precision = export.precision
    if options.int8:
        calib_dir = options.int8_calibration or options.calibrate_bn
        assert calib_dir is not None, "int8 needs calibration photos"
        try:
            inputs = int8_calibration_inputs(calib_dir, prep, options.int8_limit)
            quant = quantize_int8(
                graph_path,
                out / MODEL_FILE,
                inputs,
                scope=options.int8_scope,
                reduce_range=not options.int8_full_range,
            )
        finally:
            graph_path.unlink(missing_ok=True)
        precision = "int8"
        summary["int8"] = {
            **quant.to_dict(),
            "path": str(out / MODEL_FILE),
            "calibration_dir": calib_dir.name,
            "fp32_megabytes": round(export.file_bytes / 1e6, 1),
        }
        export.file_bytes = quant.file_bytes
    arch = config.arch_name
    if sg_options.enabled or prep.scale_pooling != "mean":
        arch += "-sg"
    meta = ModelMeta(
        name=options.name or default_name(arch, source, options.seed),
        version=options.version,
        architecture=family_of(config),
        backbone=config.backbone_name,
        depth=get_backbone_spec(config.backbone_name).pycls_depth,
        with_ma=getattr(config, "with_ma", False),
        opset=export.opset,
        onnx_sha256=sha256_file(out / MODEL_FILE),
        precision=precision,  # type: ignore[arg-type]
        input=TensorSpec(name="image", shape=export.input_shape),
        output=TensorSpec(name="embedding", shape=export.output_shape),
        embedding_dim=export.embedding_dim,
        l2_normalized_in_graph=True,
        preprocessing=prep,
        source=source,
        intended_use=options.intended_use or intended_use(options, arch, source),
    )
    logger.info("wrote %s", save_model_meta(meta, out))
    summary.update(
        {
            "out": str(out),
            "name": meta.name,
            "precision": precision,
            "opset": export.opset,
            "cosines": export.cosines,
            "export_seconds": export.export_seconds,
            "parity_seconds": export.parity_seconds,
            "megabytes": round(export.file_bytes / 1e6, 1),
        }
    )
    return summary
