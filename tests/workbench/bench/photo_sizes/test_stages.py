"""Per-stage CPU of the service's pixel chain, and the choices it was measured against."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.artifacts import load_model_meta
from workbench.bench.inputs import prepare_tensors
from workbench.bench.photo_sizes.alternatives import batch_cost, resize_options
from workbench.bench.photo_sizes.stages import per_stage, resolved_chain, stage_costs
from workbench.bench.raw_ort import RawOrt
from workbench.servers.service import settings_for


def test_per_stage_names_the_three_stages_and_their_total() -> None:
    assert per_stage([1.004, 2.0, 0.5]) == {
        "decode_ms": 1.0,
        "resize_ms": 2.0,
        "thumbnail_ms": 0.5,
        "total_ms": 3.5,
    }
    with pytest.raises(ValueError):
        per_stage([1.0, 2.0])


def test_stage_costs_and_alternatives_on_real_photos(
    tmp_path: Path, web_photos: list[tuple[str, bytes]], tiny_model: Path
) -> None:
    meta = load_model_meta(tiny_model)
    settings = settings_for(tmp_path / "data", tiny_model, {})
    assert resolved_chain(settings, meta) == meta.preprocessing.pixel_chain  # "auto"
    official = settings_for(tmp_path / "d2", tiny_model, {"inference.pixel_chain": "official"})
    assert resolved_chain(official, meta) == "official"

    raw = RawOrt(tiny_model / meta.onnx_file, settings)
    blobs = [b for _, b in web_photos]
    out = stage_costs(blobs, settings, meta, raw, reps=1)
    for key in ("cpu_ms_per_image", "before_cpu_ms_per_image"):
        c = out[key]
        assert c["decode_ms"] > 0
        parts = c["decode_ms"] + c["resize_ms"] + c["thumbnail_ms"]
        assert c["total_ms"] == pytest.approx(parts, abs=0.02)
    assert out["raw_inference_ms_per_image"] > 0 and out["chain"] == resolved_chain(settings, meta)

    resizers = resize_options(blobs[0], meta.preprocessing, reps=1)
    assert {"from", "to", "pillow_bicubic", "numpy_cv2_bicubic_float_planes"} <= set(resizers)
    width, height = (int(v) for v in str(resizers["to"]).split("x"))
    assert max(width, height) == meta.preprocessing.max_side

    tensors = prepare_tensors(blobs[:1], settings, meta.preprocessing)[0]
    cost = batch_cost(raw, tensors, sizes=(1, 2))
    assert list(cost) == ["batch_1", "batch_2"] and all(v >= 0 for v in cost.values())
