"""The Markdown report: cell formatting, the header, and tables whose rows match their header."""

from __future__ import annotations

from typing import Any

from workbench.bench.report.cells import fmt
from workbench.bench.report.markdown import markdown
from workbench.bench.report.photos import photos_tables
from workbench.bench.report.rerank import rerank_tables

MACHINE = {
    "time_utc": "2026-01-01T00:00:00Z",
    "cores": 2,
    "cpu": "cpu",
    "simd": ["avx2"],
    "memory_gib": 8.0,
    "loadavg_at_start": [0.5],
    "versions": {"python": "3.11", "numpy": "2"},
}


def _tables_are_rectangular(lines: list[str]) -> int:
    """Each table's rows have as many cells as its header; returns the number of tables."""
    tables = 0
    width = None
    for line in [*lines, ""]:
        if line.startswith("|"):
            cells = line.count("|") - 1
            if width is None:
                width, tables = cells, tables + 1
            assert cells == width, line
        else:
            width = None
    return tables


def test_fmt_rounds_floats_to_three_digits_below_100_and_to_whole_numbers_above() -> None:
    assert fmt(None) == "-"
    assert fmt(0.123456) == "0.123" and fmt(12.345) == "12.3" and fmt(-0.5) == "-0.5"
    assert fmt(1234.56) == "1,235" and fmt(100.0) == "100"
    assert fmt(7) == "7" and fmt("x") == "x"


def test_the_header_names_the_machine_the_load_and_the_command() -> None:
    text = markdown(
        {"command": "python -m workbench.bench --quick", "machine": MACHINE, "loadavg_at_end": [1]}
    )
    assert text == (
        "Run 2026-01-01T00:00:00Z on 2 cores (cpu, avx2; 8.0 GiB), load average at start "
        "[0.5], at end [1]. Versions: python 3.11, numpy 2.\n\n"
        "Command: `python -m workbench.bench --quick`\n"
    )


def test_targets_and_section_tables_have_as_many_cells_as_their_header() -> None:
    targets = [{"target": "t", "value": 0.5, "bound": ">= 0.9", "status": "miss", "note": ""}]
    text = markdown({"command": "c", "machine": MACHINE, "targets": targets})
    assert "| t | 0.5 | >= 0.9 | **miss** |  |" in text
    assert _tables_are_rectangular(text.splitlines()) == 1

    run = {
        "rerank": {"p50_ms": 1.0, "p99_ms": 2.0},
        "floor_mxm_similarities": {"p50_ms": 0.5},
        "contention": {
            "onnxruntime_images_per_s_alone": 10,
            "onnxruntime_images_per_s_with_rerank": 9,
            "ratio_with_over_alone": 0.9,
            "rerank_under_load": {"p50_ms": 1.5, "p99_ms": 3.0},
        },
    }
    assert _tables_are_rectangular(rerank_tables({"one_thread": run, "default_threads": run})) == 2


def _photos() -> dict[str, Any]:
    stage = {"decode_ms": 1, "resize_ms": 2, "thumbnail_ms": 3, "total_ms": 6}
    return {
        "model": {"name": "m", "pixel_chain": "fast", "max_side": 512},
        "inputs": {"web": {"sizes": ["1x1", "2x2", "3x3"], "mean_bytes": 12_345, "count": 3}},
        "stages": {
            "web": {
                "cpu_ms_per_image": stage,
                "before_cpu_ms_per_image": stage,
                "raw_inference_ms_per_image": 4,
            }
        },
        "http": [
            {
                "set": "web",
                "files_per_request": 8,
                "clients": 2,
                "check_duplicates": False,
                "images_per_s": 1,
                "raw_images_per_s": 2,
                "ratio_to_raw": 0.5,
                "ratio_per_block": [0.5],
                "server_cpu_s_per_image": 0.1,
                "raw_cpu_s_per_image": 0.05,
                "server_ms_per_image": {"decode": 1.0},
                "loadavg": [1.0],
            }
        ],
        "memory_36mp": [
            {
                "variant": "service defaults",
                "idle_rss_mib": 100,
                "peak_over_idle_mib": 50,
                "held_5s_over_idle_mib": 5,
                "search_latency": {"p50_ms": 9},
                "loadavg": [1.0],
            }
        ],
    }


def test_photos_tables() -> None:
    lines = photos_tables(_photos())
    assert _tables_are_rectangular(lines) == 3
    assert "| web (1x1, 2x2, ..., 12 kB) | 3 | 1 | 2 | 3 | **6** | 1 / 2 / 3 = 6 | 4 |" in lines
    assert any(
        line.startswith("| web, 8 files x 2 clients, check_duplicates=false |") for line in lines
    )
    assert "1.0 / None / None / None / None / None" in "\n".join(lines)  # missing stages
