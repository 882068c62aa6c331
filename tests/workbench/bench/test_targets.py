"""The targets read from a suite result: the bound each figure is held to and the status."""

from __future__ import annotations

from typing import Any

from workbench.bench.targets import targets


def _index_row(concurrency: int, ratio: float, cpu_ratio: float) -> dict[str, Any]:
    return {
        "endpoint": "POST /index",
        "concurrency": concurrency,
        "ratio_to_raw": ratio,
        "cpu_ratio_raw_over_server": cpu_ratio,
        "images_per_s": 10.0 * ratio,
        "raw_images_per_s": 10.0,
    }


def _store_run(recall: float, p50_ms: float, batch_ratio: float) -> dict[str, Any]:
    return {
        "measure": {
            "batch": {
                "ratio_store_over_raw": batch_ratio,
                "store_qps": 900,
                "raw_qps": 1000,
                "queries_per_call": 100,
            },
            "single_query": {
                "p50_ratio_raw_over_store": 0.5,
                "store": {"p50_ms": p50_ms},
                "raw": {"p50_ms": p50_ms / 2},
            },
            "recall_at_10": {"store": recall},
        }
    }


def test_indexing_is_the_lower_median_of_the_concurrent_rows() -> None:
    """c=1 rows are left out when concurrent ones exist; with two rows, the worse one."""
    embed: dict[str, Any] = {
        "settings": {"overrides": {}},
        "http": {
            "rows": [
                _index_row(1, 0.1, 0.2),
                _index_row(8, 0.95, 0.97),
                _index_row(32, 0.85, 0.9),
                {"endpoint": "POST /search", "concurrency": 8, "ratio_to_raw": 2.0},
            ]
        },
    }
    rows = targets({"embed": embed})
    first, gpu = rows
    assert first["value"] == 0.85 and first["status"] == "miss" and first["bound"] == ">= 0.9"
    assert first["target"].endswith("(CPU, default settings)")
    assert first["note"].endswith("CPU-time ratio (raw CPU s per image / server's) 0.9")
    assert gpu["status"] == "n/a" and gpu["value"] == "not measured"
    embed["http"]["rows"] = [_index_row(1, 0.93, 0.95)]  # only c=1: it is used
    embed["settings"]["overrides"] = {"inference.max_batch": 4}
    (first, _) = targets({"embed": embed})
    assert first["value"] == 0.93 and first["status"] == "hit"
    assert "(CPU, {'inference.max_batch': 4})" in first["target"]


def test_recall_at_latency_is_decided_only_at_a_million() -> None:
    small = targets({"store": {"3000": _store_run(0.99, 1.0, 0.95)}})
    assert [r["status"] for r in small] == ["hit", "miss", "n/a"]
    assert small[2]["note"] == "target is at 1M; largest size run is smaller"
    big = targets(
        {"store": {"3000": _store_run(0.99, 1.0, 0.95), "1000000": _store_run(0.96, 5.5, 1.0)}}
    )
    assert big[-1]["target"].endswith("(n=1000000)") and big[-1]["status"] == "miss"  # 5.5 ms
    assert big[-1]["value"] == "0.96 @ 5.5 ms"


def test_photo_rows_are_held_to_their_set_s_bound_and_memory_to_the_first_variant() -> None:
    def http(name: str, ratio: float, checked: bool) -> dict[str, Any]:
        return {
            "set": name,
            "check_duplicates": checked,
            "files_per_request": 8,
            "clients": 2,
            "ratio_to_raw": ratio,
            "images_per_s": 1.0,
            "raw_images_per_s": 1.0,
            "ratio_per_block": [ratio],
            "server_cpu_s_per_image": 0.1,
            "raw_cpu_s_per_image": 0.1,
            "loadavg": [1.0],
        }

    def memory(peak: float, held: float) -> dict[str, Any]:
        return {
            "concurrency": 3,
            "peak_over_idle_mib": peak,
            "held_5s_over_idle_mib": held,
            "idle_rss_mib": 100.0,
            "searches": 12,
        }

    photos = {
        "http": [http("web", 0.85, True), http("phone", 0.85, False)],
        "memory_36mp": [memory(400.0, 150.0), memory(900.0, 900.0)],
    }
    web, phone, mem = targets({"photos": photos})
    assert (web["bound"], web["status"]) == (">= 0.9", "miss")
    assert (phone["bound"], phone["status"]) == (">= 0.8", "hit")
    assert "(check_duplicates=false)" in phone["target"]
    assert "check_duplicates" not in web["target"]
    assert mem["status"] == "hit" and mem["value"] == "+400.0 / +150.0 MiB"
