"""`python -m workbench.bench.photos`: one small real run on the tiny graph (the memory part has
its own test in photo_sizes/test_memory.py); checks the JSON's shape, not its figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.artifacts.tiny_model import write_tiny_model
from workbench.bench.photos import parse_args, run

REPO = Path(__file__).resolve().parents[3]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
NAMES = ["plasma_kite.jpg", "mate_garden.jpg", "skimage_coffee.jpg"]


def test_the_options_and_their_defaults() -> None:
    args = parse_args(["--model-dir", "m"])
    assert (args.phone_count, args.camera_count, args.requests, args.files_per_request) == (
        8,
        4,
        6,
        8,
    )
    assert (args.clients, args.repeats, args.duplicate_check) == (2, 2, "both")
    assert args.http and args.memory
    assert (args.memory_searches, args.memory_concurrency) == (12, 3)
    with pytest.raises(SystemExit):
        parse_args([])  # --model-dir is required


def test_a_small_run_reports_every_part(tmp_path: Path) -> None:
    if not PHOTOS.is_dir():
        pytest.skip("../shared/data/photos is not available")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in NAMES:
        shutil.copy(PHOTOS / name, photos / name)
    model = write_tiny_model(tmp_path / "model", max_side=128)
    small = "--phone-count 1 --camera-count 1 --requests 1 --files-per-request 2 --repeats 1"
    rows = "--duplicate-check off --no-memory"
    args = parse_args(
        ["--model-dir", str(model), "--photos", str(photos), *small.split(), *rows.split()]
    )
    result = run(args)
    assert list(result) == [
        "model",
        "inputs",
        "threads",
        "resize_options_cpu_ms",
        "onnxruntime_cpu_ms_per_image_by_batch",
        "stages",
        "duplicate_check",
        "http",
    ]
    assert result["inputs"]["phone"]["sizes"] == ["4032x3024"]
    assert result["inputs"]["camera"]["sizes"] == ["7360x4912"]
    assert result["inputs"]["web"]["count"] == 3
    assert list(result["stages"]) == ["web", "phone", "camera"]
    assert [d["uploads"] for d in result["duplicate_check"]] == ["distinct", "repeated"]
    assert [(r["set"], r["check_duplicates"]) for r in result["http"]] == [
        ("web", False),
        ("phone", False),
    ]
