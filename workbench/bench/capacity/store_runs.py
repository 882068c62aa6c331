"""The store benchmark runs the capacity model reads: JSON from workbench/bench/store.py, one
object per file (the last `{` line, so a file may also hold logs), turned into the per-run
facts the model fits and checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workbench.bench.capacity.model import TRAINING_SAMPLE, nlist_for, pq_m

MIB = 2**20


def read_runs(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Each file's last line that starts with `{`, parsed."""
    out = []
    for p in paths:
        lines = [ln for ln in p.read_text().splitlines() if ln.strip().startswith("{")]
        out.append(json.loads(lines[-1]))
    return out


def observed(
    run: dict[str, Any], cores: int, training_sample: int = TRAINING_SAMPLE
) -> dict[str, Any]:
    """Per-run facts the model uses: n, d, measured bytes, seconds per query per core.
    Index parameters missing from an older run are the store's own choice for its size."""
    n, d = int(run["n"]), int(run["dim"])
    m = run["measure"]
    files = run.get("disk_mib", {})
    index_mib = sum(v for k, v in files.items() if k.startswith("index-"))
    params = run.get("index_params", {})
    return {
        "n": n,
        "d": d,
        "m": int(params.get("m", pq_m(d))),
        "nlist": int(params.get("nlist", nlist_for(n, d, training_sample))),
        "nbits": int(params.get("nbits", 8)),
        "nprobe": int(m["nprobe"]),
        "fetch": int(m["candidates"]),
        "index_file_bytes_per_vector": index_mib * MIB / n,
        "catalog_bytes_per_vector": files.get("catalog.sqlite", 0.0) * MIB / n,
        "index_anon_mib": m["memory"]["index_anon_mib"],
        # CPU seconds per batched query when measured (robust to other load), else batched
        # wall time x the threads it used.
        "core_s_per_query": m["batch"].get("store_cpu_s_per_query")
        or cores / float(m["batch"]["store_qps"]),
        "single_p50_ms": m["single_query"]["store"]["p50_ms"],
        "single_p99_ms": m["single_query"]["store"]["p99_ms"],
        "recall_at_10": m["recall_at_10"]["store"],
    }
