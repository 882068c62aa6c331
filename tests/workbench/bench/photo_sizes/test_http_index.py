"""POST /index against raw onnxruntime through a real server on the tiny graph."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from app.artifacts import load_model_meta
from workbench.bench.inputs import prepare_tensors
from workbench.bench.photo_sizes.http_index import http_index, index_block
from workbench.bench.raw_ort import RawOrt
from workbench.servers.service import Server, server_env, settings_for


def test_a_row_measures_every_request_and_the_raw_limit_around_it(
    tmp_path: Path, web_photos: list[tuple[str, bytes]], tiny_model: Path
) -> None:
    meta = load_model_meta(tiny_model)
    settings = settings_for(tmp_path / "inproc", tiny_model, {})
    raw = RawOrt(tiny_model / meta.onnx_file, settings)
    tensors = prepare_tensors([b for _, b in web_photos], settings, meta.preprocessing)
    args = argparse.Namespace(requests=2, files_per_request=2, clients=2, repeats=2)
    server = Server(server_env(tmp_path / "server", tiny_model, {}), tmp_path / "server.log")
    try:
        server.wait_ready(120.0)
        wall, lat, bodies = asyncio.run(index_block(server.base, web_photos, 3, 2, 2, "t"))
        assert wall > 0 and len(lat) == len(bodies) == 3
        row = http_index(server, "web", web_photos, tensors, raw, args, check_duplicates=False)
    finally:
        server.stop()
    assert row["images"] == 2 * 2 * 2 and row["check_duplicates"] is False
    assert len(row["ratio_per_block"]) == 2 and row["raw_images_per_s"] > 0
    # The row's ratio is the median of the blocks' (two blocks: their mean).
    assert row["ratio_to_raw"] == pytest.approx(sum(row["ratio_per_block"]) / 2, abs=0.002)
    assert {"decode", "inference", "store"} <= set(row["server_ms_per_image"])
