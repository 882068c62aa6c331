"""The embed section's tables (workbench/bench/embed.py): raw onnxruntime, the in-process
Embedder and HTTP rows side by side; CPU before the session; the server's search timings."""

from __future__ import annotations

from typing import Any

from workbench.bench.report.cells import fmt


def embed_tables(e: dict[str, Any], title: str) -> list[str]:
    mm = e["model"]
    lines = [
        f"### {title}: {mm['name']} ({mm['precision']}), max side {mm['max_side']}, "
        f"scales {mm['scales']}",
        "",
        f"{e['photos']['count']} JPEGs from `{e['photos']['dir']}` (raw and embedder "
        f"rounds: the first {e['photos']['raw_subset']}); intra-op threads "
        f"{e['settings']['intra_op_threads']}, decode threads "
        f"{e['settings']['decode_threads']}, max_batch "
        f"{e['settings']['inference']['max_batch']}, max_wait_ms "
        f"{e['settings']['inference']['max_wait_ms']}, jpeg_draft "
        f"{e['settings']['inference']['jpeg_draft']}; overrides "
        f"{e['settings']['overrides'] or 'none'}.",
        "",
        "| path | concurrency | requests | images/s | p50 ms | p99 ms | raw limit "
        "images/s | raw p50 ms | ratio (wall) | CPU s/image | raw CPU s/image | "
        "ratio (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    raw = e["raw"]
    raw_cpu = raw.get("cpu_s_per_image")
    lines.append(
        f"| raw `session.run` (batch 1 / batched: {raw['images_per_s_batch1']} / "
        f"{raw['images_per_s_batched']} img/s) | 1 | {raw['latency']['n']} | "
        f"{fmt(raw['images_per_s'])} | {fmt(raw['latency']['p50_ms'])} | "
        f"{fmt(raw['latency']['p99_ms'])} | {fmt(raw['images_per_s'])} | "
        f"{fmt(raw['latency']['p50_ms'])} | 1.0 | {fmt(raw_cpu)} | "
        f"{fmt(raw_cpu)} | 1.0 |"
    )
    for row in e["embedder"]:
        lines.append(
            f"| Embedder (in process) | {row['concurrency']} | {row['requests']} | "
            f"{fmt(row['images_per_s'])} | {fmt(row['latency']['p50_ms'])} | "
            f"{fmt(row['latency']['p99_ms'])} | {fmt(raw['images_per_s'])} | "
            f"{fmt(raw['latency']['p50_ms'])} | {fmt(row['ratio_to_raw'])} | "
            f"{fmt(row.get('cpu_s_per_image'))} | {fmt(raw_cpu)} | "
            f"{fmt(row.get('cpu_ratio_raw_over_embedder'))} |"
        )
    for row in (e.get("http") or {}).get("rows", []):
        lines.append(
            f"| HTTP {row['endpoint']} | {row['concurrency']} | {row['requests']} | "
            f"{fmt(row['images_per_s'])} | {fmt(row['latency']['p50_ms'])} | "
            f"{fmt(row['latency']['p99_ms'])} | {fmt(row['raw_images_per_s'])} | "
            f"{fmt(row['raw_p50_ms'])} | {fmt(row['ratio_to_raw'])} | "
            f"{fmt(row.get('server_cpu_s_per_image'))} | "
            f"{fmt(row.get('raw_cpu_s_per_image'))} | "
            f"{fmt(row.get('cpu_ratio_raw_over_server'))} |"
        )
    lines.append("")
    pc = e.get("preprocess_cpu_ms_per_image")
    if pc:
        lines += [
            "CPU ms per image before the session (all photos, decode + long-side cap "
            "+ multi-scale tensors): exact decode "
            f"{pc['exact']['decode_ms']} + {pc['exact']['cap_ms']} + "
            f"{pc['exact']['multiscale_ms']} = **{pc['exact']['total_ms']}**; "
            f"`jpeg_draft` {pc['draft']['decode_ms']} + {pc['draft']['cap_ms']} + "
            f"{pc['draft']['multiscale_ms']} = **{pc['draft']['total_ms']}**.",
            "",
        ]
    lines += search_timings(e)
    if e.get("http"):
        h = e["http"]
        lines += [
            f"Server RSS: {h['rss_idle']['rss_mib']} MiB idle after warm-up (model "
            f"loaded, empty store), {h['rss_after']['rss_mib']} MiB after the run; "
            f"ready {h['ready_s']} s after start.",
            "",
        ]
    return lines


def search_timings(e: dict[str, Any]) -> list[str]:
    """The server's own `timings_ms` of POST /search per stage (p50 / p99), one row per
    concurrency; nothing when the rows carry none."""
    search_rows = [
        r
        for r in (e.get("http") or {}).get("rows", [])
        if r.get("server_timings") and r["endpoint"] == "POST /search"
    ]
    if not search_rows:
        return []
    stages = sorted({k for r in search_rows for k in r["server_timings"]})
    lines = [
        "Server-side `timings_ms` of `POST /search` (p50 / p99):",
        "",
        "| concurrency | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for r in search_rows:
        cells = [
            f"{fmt(r['server_timings'][s]['p50_ms'])} / {fmt(r['server_timings'][s]['p99_ms'])}"
            if s in r["server_timings"]
            else "-"
            for s in stages
        ]
        lines.append(f"| {r['concurrency']} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines
