"""Near-duplicate search through the HTTP API with a real exported DOLG-R50 (random init as the
official trainer does it, BN calibrated on the bundled samples; 256 px at one scale to stay cheap
on 2 cores): index the shared photos, query with transformed copies, the source must come back
first for most of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.evaluation.near_duplicates import recall_at_1, transformed_queries
from tests.app.api.conftest import PHOTOS, REPO, make_client, photo_bytes, wait_ready

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available"),
]

# Geometric and photometric edits a copy-detection user expects to survive.
TRANSFORMS = ["crop_center_70", "crop_offset", "rotate_8", "jpeg_q20", "downscale_third"]


@pytest.fixture(scope="module")
def dolg_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from workbench.export import run as export_main

    out = tmp_path_factory.mktemp("dolg") / "model"
    export_main([
        "--random-init", "--depth", "50", "--seed", "0",
        "--calibrate-bn", str(REPO / "index_data" / "samples"), "--zero-init-final-gamma",
        "--calib-max-side", "256", "--max-side", "256", "--scales", "1.0",
        "--out", str(out),
    ])
    return out


def test_transformed_copies_find_their_source(tmp_path: Path, dolg_model_dir: Path) -> None:
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    with make_client(tmp_path, dolg_model_dir) as client:
        wait_ready(client, timeout=120)
        for lo in range(0, len(names), 10):
            chunk = names[lo:lo + 10]
            files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in chunk]
            resp = client.post("/index", files=files, data={"ids": chunk})
            assert resp.status_code == 201, resp.text
        hits: dict[str, dict[str, str | None]] = {}
        for name in names:
            hits[name] = {}
            for t, query in transformed_queries(photo_bytes(name), TRANSFORMS).items():
                res = client.post("/search", files={"file": ("q.jpg", query, "image/jpeg")},
                                  data={"top_k": "1"}).json()
                hits[name][t] = res["results"][0]["id"]
        health = client.get("/health").json()
    assert health["model"]["source"] == "random-init"
    recall = recall_at_1(hits)
    assert recall["overall"] >= 0.8, recall
    assert recall["jpeg_q20"] >= 0.9, recall
