"""`python -m workbench.bench.capacity_model`: fitted and checked runs in, sizing JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.bench.capacity.model import query_terms
from workbench.bench.capacity_model import main

TRUE = np.array([2e-9, 5e-9, 6e-9])


def _write_run(path: Path, n: int, d: int, nprobe: int, fetch: int) -> Path:
    """A store run whose CPU seconds per query are exactly the model's with TRUE."""
    run = {
        "n": n,
        "dim": d,
        "disk_mib": {"index-0.faiss": n * 100 / 2**20, "catalog.sqlite": n * 80 / 2**20},
        "measure": {
            "nprobe": nprobe,
            "candidates": fetch,
            "memory": {"index_anon_mib": 1.0},
            "batch": {
                "store_qps": 1.0,
                "store_cpu_s_per_query": float(query_terms(n, d, nprobe, fetch) @ TRUE),
            },
            "single_query": {"store": {"p50_ms": 1.0, "p99_ms": 2.0}},
            "recall_at_10": {"store": 0.97},
        },
    }
    path.write_text("progress log\n" + json.dumps(run) + "\n")
    return path


def test_fitted_runs_are_predicted_exactly_and_nodes_sized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [(3000, 64, 8, 100), (20_000, 64, 16, 400), (50_000, 128, 32, 50)]
    paths = [_write_run(tmp_path / f"r{i}.json", *r) for i, r in enumerate(runs)]
    check = _write_run(tmp_path / "check.json", 10_000, 128, 4, 1000)
    argv = [a for p in paths for a in ("--fit", str(p))] + ["--check", str(check)]
    assert main([*argv, "--sizes", "1e6,1e8", "--dim", "512", "--ingest-cpu-s", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == [
        "coefficients_s",
        "catalog_bytes_per_vector",
        "fitted",
        "checked",
        "faiss_node",
        "ingest",
    ]
    coef = out["coefficients_s"]
    np.testing.assert_allclose(
        [
            coef["coarse_per_dim_centroid"],
            coef["pq_scan_per_code_byte"],
            coef["rescore_per_dim_candidate"],
        ],
        TRUE,
        rtol=1e-6,
    )
    assert out["catalog_bytes_per_vector"] == 80.0
    assert [r["qps_per_core"]["ratio"] for r in out["fitted"] + out["checked"]] == [1.0] * 4
    assert set(out["faiss_node"]) == {"fp16", "int8"}
    assert [node["n"] for node in out["faiss_node"]["int8"]] == [1_000_000, 100_000_000]
    fp16, int8 = out["faiss_node"]["fp16"][0], out["faiss_node"]["int8"][0]
    assert fp16["rescore_rows_gib"] == round(1e6 * 1024 / 2**30, 1)
    assert int8["rescore_rows_gib"] == round(1e6 * 512 / 2**30, 1)
    assert out["ingest"]["images_per_s_per_core"] == 10.0
