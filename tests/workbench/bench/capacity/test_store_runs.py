"""Reading store benchmark runs into the capacity model's per-run facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.bench.capacity.model import nlist_for
from workbench.bench.capacity.store_runs import observed, read_runs


def store_run(n: int, d: int, qps: float, cpu_s: float | None = None) -> dict[str, Any]:
    """The fields of a workbench/bench/store.py run that the model reads."""
    batch: dict[str, Any] = {"store_qps": qps}
    if cpu_s is not None:
        batch["store_cpu_s_per_query"] = cpu_s
    return {
        "n": n,
        "dim": d,
        "index_params": {"m": 8, "nlist": 64, "nbits": 8},
        "disk_mib": {"index-0001.faiss": 1.5, "index-extra": 0.5, "catalog.sqlite": 2.0},
        "measure": {
            "nprobe": 16,
            "candidates": 100,
            "memory": {"index_anon_mib": 3.0},
            "batch": batch,
            "single_query": {"store": {"p50_ms": 1.0, "p99_ms": 2.0}},
            "recall_at_10": {"store": 0.97},
        },
    }


def test_read_runs_takes_each_file_s_last_json_line(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('[log] started\n{"n": 1}\nmore log\n  {"n": 2}\n')
    assert read_runs([path]) == [{"n": 2}]


def test_observed_bytes_per_vector_and_core_seconds_per_query() -> None:
    n = 2**20
    o = observed(store_run(n, 64, qps=500.0, cpu_s=0.004), cores=2)
    assert (o["n"], o["d"], o["m"], o["nlist"], o["nbits"]) == (n, 64, 8, 64, 8)
    assert (o["nprobe"], o["fetch"]) == (16, 100)
    assert o["index_file_bytes_per_vector"] == 2.0  # 2 MiB of index-* files over 2^20 rows
    assert o["catalog_bytes_per_vector"] == 2.0
    assert o["core_s_per_query"] == 0.004  # measured CPU seconds win
    assert observed(store_run(n, 64, qps=500.0), cores=2)["core_s_per_query"] == 2 / 500.0


def test_missing_index_parameters_are_the_store_s_choice_for_the_sample() -> None:
    run = store_run(1_000_000, 512, qps=100.0)
    del run["index_params"]
    assert observed(run, cores=1)["m"] == 64
    assert observed(run, cores=1, training_sample=39 * 512)["nlist"] == 512
    assert observed(run, cores=1)["nlist"] == nlist_for(1_000_000, 512) == 4096


def test_a_run_file_as_the_store_bench_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps(store_run(3000, 64, qps=1000.0)) + "\n")
    (o,) = [observed(r, cores=2) for r in read_runs([path])]
    assert o["n"] == 3000 and o["core_s_per_query"] == 0.002
