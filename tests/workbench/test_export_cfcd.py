"""A CFCD network through the artifact contract: workbench/export.py writes it, the service
runtime loads it and finds an indexed image by a copy of itself."""

from __future__ import annotations

import asyncio
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.artifacts import load_model_meta
from tests.models.official_keys import cfcd_keys, random_state

pytestmark = pytest.mark.torch



def _export_main():  # type: ignore[no-untyped-def]
    return importlib.import_module("workbench.export").run


def _jpeg(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([(x * (3 + seed)) % 256, (y * (5 + seed)) % 256, ((x + y) * 7) % 256], -1)
    pixels = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_official_cfcd_checkpoint_exports_with_its_meta(tmp_path: Path) -> None:
    path = tmp_path / "model_s1_0050.pyth"
    torch.save({"epoch": 50, "model_state": random_state(cfcd_keys(50, num_classes=5))}, path)
    out = tmp_path / "artifact"
    summary = _export_main()(["--checkpoint", str(path), "--out", str(out),
                              "--max-side", "128", "--scales", "1.0"])
    meta = load_model_meta(out)
    assert summary["name"] == meta.name == "cfcd-r50"
    assert (meta.architecture, meta.backbone, meta.depth, meta.embedding_dim) == (
        "cfcd", "resnet50", 50, 512)
    assert meta.source.kind == "official" and meta.source.checkpoint == path.name
    # The official weights expect BGR input with the BGR-ordered ImageNet statistics.
    assert meta.preprocessing.colour_order == "BGR"
    assert meta.preprocessing.mean == (0.406, 0.456, 0.485)
    assert min(summary["cosines"].values()) > 0.9999
    assert "CFCD" in meta.intended_use


def test_cfcd_lite0_artifact_serves(tmp_path: Path) -> None:
    from app.config import Settings
    from app.metrics import Metrics
    from app.runtime import Runtime

    out = tmp_path / "artifact"
    _export_main()(["--imagenet", "--architecture", "cfcd", "--backbone", "efficientnet_lite0",
                    "--reduction-dim", "64", "--out", str(out), "--max-side", "128",
                    "--scales", "1.0"])
    meta = load_model_meta(out)
    assert (meta.architecture, meta.backbone, meta.embedding_dim) == (
        "cfcd", "efficientnet_lite0", 64)
    assert meta.preprocessing.colour_order == "RGB"  # the Lite0 weights' convention

    async def search() -> list[str]:
        runtime = Runtime.start(Settings(data_dir=tmp_path / "data", model_dir=out), Metrics())
        try:
            blobs = [_jpeg(i) for i in range(3)]
            await runtime.service.index_images(blobs, ["a", "b", "c"], [None] * 3)
            copy = io.BytesIO()
            Image.open(io.BytesIO(blobs[1])).crop((4, 4, 92, 68)).save(copy, format="JPEG")
            result = await runtime.service.search_image(copy.getvalue(), top_k=3)
            return [h.id for h in result.hits]
        finally:
            runtime.close()

    ids = asyncio.run(search())
    assert ids[0] == "b" and sorted(ids) == ["a", "b", "c"]
