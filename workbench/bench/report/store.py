"""The store section's tables (workbench/bench/store.py): the store next to raw FAISS with the
same index file and parameters, the re-scoring sweep, and adds, memory and the nprobe sweep."""

from __future__ import annotations

from typing import Any

from workbench.bench.report.cells import fmt


def store_tables(store: dict[str, Any]) -> list[str]:
    """`store` maps each size (a string) to that size's run."""
    return search_table(store) + candidates_table(store) + adds_memory_table(store)


def search_table(store: dict[str, Any]) -> list[str]:
    lines = [
        "### Store: IVF-PQ + exact fp16 re-scoring vs raw FAISS (same index file, same parameters)",
        "",
        "| n | index | recall@10 store / raw | single-query p50 / p99 ms: store | raw "
        "| single ratio (raw/store p50) | batched QPS store | raw | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, s in store.items():
        mm = s["measure"]
        sq = mm["single_query"]
        lines.append(
            f"| {int(size):,} | {s['index_params'].get('factory')}, nprobe {mm['nprobe']}, "
            f"{mm['candidates']} re-scored | {mm['recall_at_10']['store']} / "
            f"{mm['recall_at_10']['raw']} | {sq['store']['p50_ms']} / {sq['store']['p99_ms']}"
            f" | {sq['raw']['p50_ms']} / {sq['raw']['p99_ms']} | "
            f"{sq['p50_ratio_raw_over_store']} | {fmt(mm['batch']['store_qps'])} | "
            f"{fmt(mm['batch']['raw_qps'])} | {mm['batch']['ratio_store_over_raw']} |"
        )
    return lines


def candidates_table(store: dict[str, Any]) -> list[str]:
    """Recall, latency and QPS per number of re-scored candidates (columns from the first
    size's sweep)."""
    sweep = next(iter(store.values()))["measure"].get("candidate_factor_sweep", [])
    lines = [
        "",
        "Re-scored candidates (nprobe as above): recall@10, single-query p50 ms, batched QPS:",
        "",
        "| n | "
        + " | ".join(f"{c['candidates']} ({c['candidate_factor']} x k)" for c in sweep)
        + " |",
        "|---|" + "---|" * len(sweep),
    ]
    for size, s in store.items():
        lines.append(
            f"| {int(size):,} | "
            + " | ".join(
                f"{c['recall_at_10']}, {c['single']['p50_ms']}, {fmt(c['batch_qps'])}"
                for c in s["measure"].get("candidate_factor_sweep", [])
            )
            + " |"
        )
    return lines


def adds_memory_table(store: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| n | durable adds/s (flat, batch) | train + add all (s) | adds/s into "
        "IVF-PQ (batch 1000) | single add p50 / p99 ms | open (s) | index RSS MiB "
        "per million | vectors.f16 MiB per million | nprobe sweep (recall, p50 ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, s in store.items():
        mm = s["measure"]
        sweep = "; ".join(
            f"{w['nprobe']}: {w['recall_at_10']}, {w['single']['p50_ms']}"
            for w in mm["nprobe_sweep"]
        )
        lines.append(
            f"| {int(size):,} | {fmt(s['add']['vectors_per_s'])} (batch {s['add']['batch']})"
            f" | {s['train_and_add_all_s']} | "
            f"{fmt(mm['add_ivfpq']['batch_1000_vectors_per_s'])} | "
            f"{mm['add_ivfpq']['single_add_latency']['p50_ms']} / "
            f"{mm['add_ivfpq']['single_add_latency']['p99_ms']} | {mm['open_s']} | "
            f"{mm['memory']['anon_mib_per_million']} | "
            f"{mm['memory']['vectors_f16_mib_per_million']} | {sweep} |"
        )
    lines.append("")
    return lines
