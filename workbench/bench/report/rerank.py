"""The rerank section's tables (workbench/bench/rerank.py): SuperGlobal at M=400 with one BLAS
thread and the default, and next to onnxruntime running the model when measured."""

from __future__ import annotations

from typing import Any

RUNS = (("one_thread", "1"), ("default_threads", "default"))
RUNS_UNDER_LOAD = (
    ("one_thread", "1 (the service's rerank.blas_threads)"),
    ("default_threads", "default"),
)


def rerank_tables(rr: dict[str, Any]) -> list[str]:
    lines = [
        "### SuperGlobal re-ranking (M=400, K=9, D=512)",
        "",
        "| BLAS threads | p50 ms | p99 ms | floor (M x M similarities) p50 ms |",
        "|---|---|---|---|",
    ]
    for key, label in RUNS:
        r = rr[key]
        lines.append(
            f"| {label} | {r['rerank']['p50_ms']} | {r['rerank']['p99_ms']} | "
            f"{r['floor_mxm_similarities']['p50_ms']} |"
        )
    lines.append("")
    if all("contention" in rr[key] for key, _ in RUNS):
        lines += [
            "Next to onnxruntime running the model continuously (one re-rank every "
            "10 ms in a second thread):",
            "",
            "| BLAS threads | onnxruntime images/s alone | with re-ranks | ratio | "
            "re-rank p50 / p99 ms under load |",
            "|---|---|---|---|---|",
        ]
        for key, label in RUNS_UNDER_LOAD:
            c = rr[key]["contention"]
            lines.append(
                f"| {label} | {c['onnxruntime_images_per_s_alone']} | "
                f"{c['onnxruntime_images_per_s_with_rerank']} | "
                f"{c['ratio_with_over_alone']} | "
                f"{c['rerank_under_load']['p50_ms']} / "
                f"{c['rerank_under_load']['p99_ms']} |"
            )
        lines.append("")
    return lines
