"""workbench/bench/copy_verdict_cost.py: the edited queries, and a cold and a warm pass with the
service's own timings (tiny model, the two sample photos)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image

from workbench.artifacts.tiny_model import write_tiny_model
from workbench.bench.copy_verdict_cost import QUERY_EDITS, edited_queries, measure

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "index_data" / "samples"


def test_each_photo_is_queried_under_each_edit() -> None:
    photos = sorted(SAMPLES.glob("*.jpg"))
    queries = edited_queries(photos)
    assert len(queries) == len(photos) * len(QUERY_EDITS)
    with Image.open(photos[0]) as im:
        size = im.size
    decoded = [Image.open(io.BytesIO(q)) for q in queries[: len(QUERY_EDITS)]]
    # crop_50_centre keeps the middle half of each side; grey and mirror keep the size.
    half = tuple(3 * s // 4 - s // 4 for s in size)
    assert [d.size for d in decoded] == [half, size, size]
    assert all(d.format == "JPEG" and d.mode == "RGB" for d in decoded)


def test_cold_and_warm_passes_report_verify_beside_embed(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model", max_side=128)
    out = asyncio.run(measure(model, SAMPLES))
    n = len(list(SAMPLES.glob("*.jpg")))
    assert (out["store"], out["queries"]) == (n, n * len(QUERY_EDITS))
    assert set(out["verdict"]) == {
        "cosine_alone",
        "cosine_floor",
        "min_inliers",
        "verify_top",
        "working_side",
    }
    for label in ("cold_cache", "warm_cache"):
        row = out[label]
        assert row["embed_ms"]["n"] == row["verify_ms"]["n"] == out["queries"]
        assert row["embed_ms"]["p95"] >= row["embed_ms"]["p50"] > 0
        assert row["verify_over_embed_p50"] >= 0
        assert 0 <= row["searches_with_a_match"] <= out["queries"]
