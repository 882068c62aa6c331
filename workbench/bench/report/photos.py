"""The photos section's tables (workbench/bench/photos.py): per-stage CPU by photo size, the
duplicate check, resizers and batch cost, POST /index against raw onnxruntime, 36 MP memory."""

from __future__ import annotations

from typing import Any


def photos_tables(ph: dict[str, Any]) -> list[str]:
    lines = stages_table(ph)
    dc = ph.get("duplicate_check")
    if dc:
        lines += [
            "POST /index's duplicate check (a by-id search of each new item: neighbours, "
            "then SIFT geometry for hits in the verdict's cosine band), CPU ms per image in "
            "process over the web photos: "
            + "; ".join(
                f"{d['uploads']} uploads {d['cpu_ms_per_image']} ms "
                f"({d['sift_passes_per_image']} SIFT passes, "
                f"{d['hits_in_geometry_band_per_image']} hits in the band, "
                f"{d['copies_reported_per_image']} copies reported)"
                for d in dc
            )
            + ".",
            "",
        ]
    ro = ph.get("resize_options_cpu_ms")
    if ro:
        lines += [
            f"Resizers, CPU ms for one phone photo's draft decode {ro['from']} -> {ro['to']}"
            ": " + ", ".join(f"{k} {v}" for k, v in ro.items() if k not in ("from", "to")) + ".",
            "",
        ]
    bc = ph.get("onnxruntime_cpu_ms_per_image_by_batch")
    if bc:
        lines += [
            "onnxruntime CPU ms per image by batch size (phone inputs): "
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in bc.items())
            + ".",
            "",
        ]
    if ph.get("http"):
        lines += http_table(ph["http"])
    if ph.get("memory_36mp"):
        lines += memory_table(ph["memory_36mp"])
    return lines


def stages_table(ph: dict[str, Any]) -> list[str]:
    """CPU ms per image of each stage, now and before, next to raw inference, per input set."""
    inputs = ph["inputs"]
    lines = [
        f"### Photo sizes ({ph['model']['name']}, pixel chain {ph['model']['pixel_chain']}"
        f", max side {ph['model']['max_side']})",
        "",
        "Per image, CPU ms on one thread (best of 2 passes): the service's stages now "
        "(decode includes the long-side cap: the working image comes out of it), the "
        "previous chain (full decode; then cap + float resize of the scales; thumbnail "
        "decoded again from the bytes) and the raw model on the same inputs (wall ms, "
        "batch 1).",
        "",
        "| input | files | decode + cap | scales | thumbnail | total | before: decode / cap + "
        "scales / thumbnail = total | raw inference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, st in ph["stages"].items():
        c, b, i = st["cpu_ms_per_image"], st["before_cpu_ms_per_image"], inputs[name]
        sizes = ", ".join(i["sizes"][:2]) + (", ..." if len(i["sizes"]) > 2 else "")
        lines.append(
            f"| {name} ({sizes}, {i['mean_bytes'] // 1000} kB) | {i['count']} | "
            f"{c['decode_ms']} | {c['resize_ms']} | {c['thumbnail_ms']} | "
            f"**{c['total_ms']}** | "
            f"{b['decode_ms']} / {b['resize_ms']} / {b['thumbnail_ms']} = "
            f"{b['total_ms']} | {st['raw_inference_ms_per_image']} |"
        )
    lines.append("")
    return lines


def http_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| POST /index | images/s | raw images/s | ratio (per block) | server CPU "
        "s/image (raw) | server ms per image: decode / resize / thumbnail / "
        "inference (queued) / store / duplicates | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["server_ms_per_image"]
        lines.append(
            f"| {r['set']}, {r['files_per_request']} files x {r['clients']} clients"
            f"{'' if r.get('check_duplicates', True) else ', check_duplicates=false'} | "
            f"{r['images_per_s']} | {r['raw_images_per_s']} | **{r['ratio_to_raw']}** "
            f"({r['ratio_per_block']}) | {r['server_cpu_s_per_image']} "
            f"({r['raw_cpu_s_per_image']}) | {t.get('decode')} / {t.get('resize')} / "
            f"{t.get('thumbnail')} / {t.get('inference')} / {t.get('store')} / "
            f"{t.get('duplicates')} | "
            f"{r['loadavg']} |"
        )
    lines.append("")
    return lines


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| 36 MP searches, 3 at a time | idle RSS MiB | peak over idle | held 5 s "
        "after | search p50 ms | load |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['idle_rss_mib']} | +{r['peak_over_idle_mib']} "
            f"| +{r['held_5s_over_idle_mib']} | {r['search_latency']['p50_ms']} | "
            f"{r['loadavg']} |"
        )
    lines.append("")
    return lines
