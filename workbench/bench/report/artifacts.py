"""The artifacts section's table (workbench/bench/artifacts.py): int8 / fp16 variants, their
speed-up and what they cost in accuracy next to fp32."""

from __future__ import annotations

from typing import Any

from workbench.bench.report.cells import fmt


def artifacts_tables(art: dict[str, Any]) -> list[str]:
    lines = [
        f"### Precision variants ({art['photos']} photos, {art['queries']} transformed queries)",
        "",
        "| artifact | MB | raw images/s (this CPU) | speed-up vs fp32 | cosine to fp32 "
        "mean / min (1 - min) | recall@1 | top-1 agreement with fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, a in art["artifacts"].items():
        c = a["cosine_to_fp32"]
        lines.append(
            f"| {key} | {a['megabytes']} | {fmt(a['raw_images_per_s'])} | "
            f"{fmt(a['speedup_vs_fp32'])} | {c['mean']} / {c['min']} "
            f"({c.get('max_distance', '-')}) | {a['recall_at_1']} | "
            f"{a['top1_agreement_with_fp32']} |"
        )
    lines.append("")
    return lines
