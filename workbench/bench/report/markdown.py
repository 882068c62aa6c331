"""The suite's JSON result as Markdown: the machine and command, the targets table, then each
section's tables in the order the suite runs them."""

from __future__ import annotations

from typing import Any

from workbench.bench.report.artifacts import artifacts_tables
from workbench.bench.report.cells import fmt
from workbench.bench.report.embed import embed_tables
from workbench.bench.report.photos import photos_tables
from workbench.bench.report.rerank import rerank_tables
from workbench.bench.report.store import store_tables

EMBED_TITLES = (("embed", "Embedding"), ("embed_one_scale", "Embedding, one scale"))


def markdown(result: dict[str, Any]) -> str:
    """The generated block's text for one run (workbench/bench/suite.py's JSON)."""
    lines = header(result) + targets_table(result.get("targets") or [])
    for key, title in EMBED_TITLES:
        if result.get(key):
            lines += embed_tables(result[key], title)
    if result.get("store"):
        lines += store_tables(result["store"])
    if result.get("rerank"):
        lines += rerank_tables(result["rerank"])
    if result.get("artifacts"):
        lines += artifacts_tables(result["artifacts"])
    if result.get("photos"):
        lines += photos_tables(result["photos"])
    return "\n".join(lines)


def header(result: dict[str, Any]) -> list[str]:
    """Where and when it ran (cores, CPU, SIMD, memory, load, versions) and the command."""
    m = result["machine"]
    return [
        f"Run {m['time_utc']} on {m['cores']} cores ({m['cpu']}, {', '.join(m['simd'])}; "
        f"{m['memory_gib']} GiB), load average at start {m['loadavg_at_start']}, at end "
        f"{result.get('loadavg_at_end')}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        "",
        f"Command: `{result['command']}`",
        "",
    ]


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """The targets (workbench/bench/targets.py) as a table; nothing when there are none."""
    if not targets:
        return []
    return [
        "### Targets",
        "",
        "| target | measured | bound | status | note |",
        "|---|---|---|---|---|",
        *(
            f"| {r['target']} | {fmt(r['value'])} | {r['bound']} | **{r['status']}** | "
            f"{r['note']} |"
            for r in targets
        ),
        "",
    ]
