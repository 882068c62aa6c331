#!/usr/bin/env python
"""The JSON of workbench/gpu/proof.sh: the machine, every step, every figure, the targets.

    python -m workbench.gpu.proof_report env --json-out F [--require-gpu]
    python -m workbench.gpu.proof_report write --work WORK --out OUT.json --mode gpu|dry-run

`env`: the GPU (nvidia-smi), Python, torch and its CUDA, cores, load. `write`: reads what
gpu_proof.sh left in WORK (steps.tsv: one line per step; steps/NAME.cmd: its command;
logs/NAME.log: its output; results/: the JSON, CSV and XML files the steps wrote) and writes
one JSON: per step its status, time, limit, command, log tail and figures; the headline
figures against the targets. A step whose files are missing or unreadable keeps its status
and gets `figures_error` instead of figures.

Standard library only: it must write the JSON whatever else failed to install.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 30
LOG_TAIL_CHARS = 4000
# Targets of the GPU proof (the issue): default model, 512 px, 16 cores.
E2E_IMAGES_PER_S = 700.0
E2E_RATIO_TO_RAW = 0.9
SEARCH_P50_MS = 15.0

_TORCH_INFO = r"""
import json, torch
info = {"version": torch.__version__, "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["device"] = torch.cuda.get_device_name(0)
    info["bf16"] = torch.cuda.is_bf16_supported()
print(json.dumps(info))
"""


# ---------------------------------------------------------------------------- env
def gpu_info() -> dict[str, Any] | None:
    """nvidia-smi's view of the GPUs, or None where there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader,nounits",
        ],
        text=True,
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:] or f"nvidia-smi exited {proc.returncode}"}
    gpus = []
    for line in proc.stdout.strip().splitlines():
        name, driver, memory = (f.strip() for f in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory_mib": int(float(memory))})
    return {"name": gpus[0]["name"] if gpus else None, "count": len(gpus), "gpus": gpus}


def env(args: argparse.Namespace) -> int:
    torch_proc = subprocess.run(
        [sys.executable, "-c", _TORCH_INFO], text=True, capture_output=True, timeout=120
    )
    torch_info: dict[str, Any] = (
        json.loads(torch_proc.stdout.strip().splitlines()[-1])
        if torch_proc.returncode == 0
        else {"error": torch_proc.stderr.strip()[-500:]}
    )
    gpu = gpu_info()
    result = {
        "gpu": gpu,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "torch": torch_info,
        "cores": len(os.sched_getaffinity(0)),
        "loadavg": list(os.getloadavg()),
    }
    Path(args.json_out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    if args.require_gpu and (not gpu or "error" in gpu or not gpu.get("count")):
        print(f"no GPU: nvidia-smi says {gpu}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- figures
def _json(path: Path) -> Any:
    """A JSON file, or the last JSON object of a file that also holds log lines."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.rfind("\n{")
        return json.loads(text[start + 1 :] if start >= 0 else text)


def _embed(section: dict[str, Any]) -> dict[str, Any]:
    rows = (section.get("http") or {}).get("rows", [])
    http = [
        {
            "endpoint": r["endpoint"],
            "concurrency": r["concurrency"],
            "requests": r["requests"],
            "images_per_s": r["images_per_s"],
            "raw_images_per_s": r["raw_images_per_s"],
            "ratio_to_raw": r["ratio_to_raw"],
            "p50_ms": r["latency"]["p50_ms"],
            "p99_ms": r["latency"]["p99_ms"],
        }
        for r in rows
    ]
    index = [r for r in http if r["endpoint"] == "POST /index"]
    concurrent = [r for r in index if r["concurrency"] > 1] or index
    search_c1 = [r for r in rows if r["endpoint"] == "POST /search" and r["concurrency"] == 1]
    raw = section["raw"]
    return {
        "model": section["model"],
        "raw_providers": section.get("raw_providers"),
        "settings": {k: section["settings"][k] for k in ("intra_op_threads", "decode_threads")}
        | {
            "max_batch": section["settings"]["inference"]["max_batch"],
            "jpeg_draft": section["settings"]["inference"]["jpeg_draft"],
        },
        "photos": section["photos"]["count"],
        "raw": {
            "images_per_s": raw["images_per_s"],
            "images_per_s_batch1": raw["images_per_s_batch1"],
            "images_per_s_batched": raw["images_per_s_batched"],
            "p50_ms": raw["latency"]["p50_ms"],
        },
        "embedder": [
            {
                "concurrency": r["concurrency"],
                "images_per_s": r["images_per_s"],
                "ratio_to_raw": r["ratio_to_raw"],
            }
            for r in section["embedder"]
        ],
        "http": http,
        "index_best": max(concurrent, key=lambda r: r["images_per_s"]) if concurrent else None,
        "search_c1_p50_ms": search_c1[0]["latency"]["p50_ms"] if search_c1 else None,
        "search_c1_server_timings_p50_ms": {
            k: v["p50_ms"] for k, v in (search_c1[0].get("server_timings") or {}).items()
        }
        if search_c1
        else None,
    }


def figures_embed(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")
    out = {"multi_scale": _embed(data["embed"])}
    if data.get("embed_one_scale"):
        out["one_scale"] = _embed(data["embed_one_scale"])
    return out


def figures_artifacts(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")["artifacts"]
    return {
        "photos": data["photos"],
        "queries": data["queries"],
        "artifacts": {
            k: {
                "precision": a["precision"],
                "megabytes": a["megabytes"],
                "raw_images_per_s": a["raw_images_per_s"],
                "speedup_vs_fp32": a["speedup_vs_fp32"],
                "cosine_to_fp32_mean": a["cosine_to_fp32"]["mean"],
                "cosine_to_fp32_min": a["cosine_to_fp32"]["min"],
                "recall_at_1": a["recall_at_1"],
                "top1_agreement_with_fp32": a["top1_agreement_with_fp32"],
            }
            for k, a in data["artifacts"].items()
        },
    }


def figures_export(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")
    return {
        k: data.get(k)
        for k in ("name", "precision", "megabytes", "export_seconds", "parity_seconds")
    } | {"parity_min_cosine": min(data["cosines"].values())}


def figures_json(res: Path, name: str, work: Path) -> dict[str, Any]:
    data: dict[str, Any] = _json(res / f"{name}.json")
    return data


def figures_health(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")
    model = data["health"].get("model") or {}
    return {
        "gpu_active": data["gpu_active"],
        "ready_s": data["ready_s"],
        "status": data["health"].get("status"),
        "providers": model.get("providers"),
        "device": model.get("device"),
        "precision": model.get("precision"),
        "model": model.get("name"),
    }


def figures_install(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")
    versions = {
        k: v.get("version")
        for k, v in data["imports"].items()
        if isinstance(v, dict) and v.get("ok")
    }
    return {
        "wheels": data["wheels"],
        "installed": data["installed"],
        "installed_dists": [
            d["dist"] + "==" + d["version"] for d in data["decisions"] if d["install"]
        ],
        "kept": {d["dist"]: d["why"] for d in data["decisions"] if not d["install"]},
        "import_failures": data["import_failures"],
        "onnxruntime_providers": data["onnxruntime_providers"],
        "cuda_provider_available": data["cuda_provider_available"],
        "onnxruntime_from_site": (data["imports"].get("onnxruntime") or {}).get("from_site"),
        "versions": versions,
    }


def figures_gpu_tests(res: Path, name: str, work: Path) -> dict[str, Any]:
    root = ET.parse(res / f"{name}.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise ValueError("no <testsuite> in the JUnit XML")
    cases = []
    for case in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        cases.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
            }
        )
    counts = {
        k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")
    }
    return {"collected": len(cases), **counts, "cases": cases}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def figures_train(res: Path, name: str, work: Path) -> dict[str, Any]:
    run = work / "train"
    rows = _csv_rows(run / "train_log.csv")
    if not rows:
        raise ValueError("train_log.csv has no rows")
    rates = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    steady = rates[1:] or rates  # the first window holds start-up (workers, cuDNN choice)
    log = (run / "train.log").read_text()
    setup = re.search(r"model: (.*)", log)
    summary = _json(res / "train.json")
    recipe = _json(res / "train_data.json")
    epochs = _csv_rows(run / "epochs.csv") if (run / "epochs.csv").exists() else []
    return {
        "setup": setup.group(1).strip() if setup else None,
        "train_images": recipe["train_images"],
        "classes": recipe["classes"],
        "steps": summary["global_step"],
        "epochs_done": summary["epochs_done"],
        "images_per_s_median": round(statistics.median(steady), 2),
        "images_per_s_max": round(max(steady), 2),
        "loss_first": float(rows[0]["loss"]),
        "loss_last": float(rows[-1]["loss"]),
        "loss_curve": [[int(r["global_step"]), float(r["loss"])] for r in rows],
        "epochs": [
            {
                k: r[k]
                for k in (
                    "epoch",
                    "global_step",
                    "train_loss",
                    "val_top1",
                    "retrieval_recall_at_1",
                    "retrieval_map",
                    "images_per_s",
                )
                if k in r
            }
            for r in epochs
        ],
    }


def figures_train_data(res: Path, name: str, work: Path) -> dict[str, Any]:
    data = _json(res / f"{name}.json")
    return {
        k: data[k]
        for k in ("classes", "train_images", "views_per_class", "view_side", "queries", "gallery")
    }


FIGURES: dict[str, Callable[[Path, str, Path], dict[str, Any]]] = {
    "env": figures_json,
    "install": figures_install,
    "export_fp32": figures_export,
    "export_fp16": figures_export,
    "health": figures_health,
    "gpu_tests": figures_gpu_tests,
    "embed_fp32": figures_embed,
    "artifacts": figures_artifacts,
    "iobinding": figures_json,
    "train_data": figures_train_data,
    "train": figures_train,
    "embed_fp16": figures_embed,
}


# ---------------------------------------------------------------------------- targets
def _get(steps: dict[str, Any], *path: str) -> Any:
    node: Any = steps
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def targets(steps: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    """The issue's targets, each with value, bound and hit / miss (n/a in a dry run or where
    the figure is missing)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, bound: str, ok: bool | None, note: str = "") -> None:
        status = (
            "n/a"
            if ok is None or value is None
            else "dry run"
            if mode != "gpu"
            else "hit"
            if ok
            else "miss"
        )
        rows.append(
            {"target": name, "value": value, "bound": bound, "status": status, "note": note}
        )

    providers = _get(steps, "health", "figures", "providers")
    active = _get(steps, "health", "figures", "gpu_active")
    add(
        "CUDA execution provider active per /health",
        providers,
        "CUDAExecutionProvider in model.providers",
        active,
    )
    tests = _get(steps, "gpu_tests", "figures") or {}
    add(
        "gpu-marked tests pass, none skipped",
        f"{tests['passed']} of {tests['collected']} passed" if tests else None,
        "all passed",
        bool(tests) and tests["collected"] > 0 and tests["passed"] == tests["collected"],
        f"skipped {tests['skipped']}, failed {tests['failed']}, errors {tests['error']}"
        if tests
        else "",
    )
    best = _get(steps, "embed_fp32", "figures", "multi_scale", "index_best") or {}
    ips, ratio = best.get("images_per_s"), best.get("ratio_to_raw")
    note = (
        f"POST /index c={best.get('concurrency')} vs raw {best.get('raw_images_per_s')} img/s"
        if best
        else ""
    )
    add(
        "end-to-end JPEG indexing, default model, 512 px (images/s)",
        ips,
        f">= {E2E_IMAGES_PER_S:g}",
        None if ips is None else ips >= E2E_IMAGES_PER_S,
        note,
    )
    add(
        "end-to-end / raw onnxruntime, same run",
        ratio,
        f">= {E2E_RATIO_TO_RAW:g}",
        None if ratio is None else ratio >= E2E_RATIO_TO_RAW,
        note,
    )
    p50 = _get(steps, "embed_fp32", "figures", "one_scale", "search_c1_p50_ms")
    add(
        "POST /search p50, one scale at 512 px, concurrency 1 (ms)",
        p50,
        f"<= {SEARCH_P50_MS:g}",
        None if p50 is None else p50 <= SEARCH_P50_MS,
    )
    fp16 = _get(steps, "artifacts", "figures", "artifacts", "fp16") or {}
    add(
        "fp16 vs fp32: raw speed-up (batch 1, multi-scale)",
        fp16.get("speedup_vs_fp32"),
        "reported",
        None,
    )
    add(
        "fp16 vs fp32: cosine to fp32 (min / mean)",
        [fp16.get("cosine_to_fp32_min"), fp16.get("cosine_to_fp32_mean")] if fp16 else None,
        "reported",
        None,
    )
    # IO binding and batched fp16 at the largest batch measured, per artifact.
    largest = {
        a["precision"]: max(a["batches"], key=lambda b: b["batch"])
        for a in _get(steps, "iobinding", "figures", "artifacts") or []
        if a.get("batches")
    }
    add(
        "IO binding on / off, images/s ratio at the largest batch",
        {k: v["ratio_on_over_off"] for k, v in largest.items()} or None,
        "reported",
        None,
        ", ".join(f"{k} batch {v['batch']}" for k, v in largest.items()),
    )
    fp16_batched = (
        round(
            largest["fp16"]["io_binding_on_images_per_s"]
            / largest["fp32"]["io_binding_on_images_per_s"],
            3,
        )
        if {"fp16", "fp32"} <= set(largest)
        else None
    )
    add(
        "fp16 vs fp32: speed-up batched, IO binding on",
        fp16_batched,
        "reported",
        None,
        f"batch {largest['fp32']['batch']}" if "fp32" in largest else "",
    )
    add(
        "training images/s (default recipe, median)",
        _get(steps, "train", "figures", "images_per_s_median"),
        "reported",
        None,
        _get(steps, "train", "figures", "setup") or "",
    )
    return rows


# ---------------------------------------------------------------------------- write
def log_tail(path: Path) -> str:
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def read_steps(work: Path) -> list[dict[str, Any]]:
    """steps.tsv: NAME, STATUS, RC, SECONDS, LIMIT_S per line, in run order."""
    steps = []
    tsv = work / "steps.tsv"
    for line in tsv.read_text().splitlines() if tsv.exists() else []:
        name, status, rc, seconds, limit = line.split("\t")
        cmd = work / "steps" / f"{name}.cmd"
        steps.append(
            {
                "name": name,
                "status": status,
                "rc": int(rc) if rc else None,
                "seconds": float(seconds),
                "limit_s": float(limit),
                "command": cmd.read_text().strip() if cmd.exists() else None,
                "log_tail": log_tail(work / "logs" / f"{name}.log"),
            }
        )
    return steps


def write(args: argparse.Namespace) -> int:
    work: Path = args.work
    res = work / "results"
    steps = read_steps(work)
    by_name: dict[str, Any] = {}
    for step in steps:
        extract = FIGURES.get(step["name"])
        if extract is not None and step["status"] != "skipped":
            try:
                step["figures"] = extract(res, step["name"], work)
            except (OSError, ValueError, KeyError, TypeError, IndexError, ET.ParseError) as exc:
                step["figures_error"] = f"{type(exc).__name__}: {exc}"
        by_name[step["name"]] = step
    env_figures = _get(by_name, "env", "figures") or {}
    gpu = env_figures.get("gpu")
    result = {
        "mode": args.mode,
        "ok": bool(steps) and all(s["status"] == "ok" and "figures_error" not in s for s in steps),
        "gpu": gpu.get("name") if isinstance(gpu, dict) else None,
        "gpu_info": gpu,
        "torch": env_figures.get("torch"),
        "cores": env_figures.get("cores"),
        "started_utc": args.started_utc,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_s": args.total_s,
        "budget_s": args.budget_s,
        "loadavg_at_end": list(os.getloadavg()),
        "targets": targets(by_name, args.mode),
        "steps": steps,
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    failed = [s["name"] for s in steps if s["status"] != "ok" or "figures_error" in s]
    print(
        f"wrote {out}: {len(steps)} steps, "
        + (f"not ok: {', '.join(failed)}" if failed else "all ok"),
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env", help="GPU, Python, torch, cores")
    e.add_argument("--json-out", type=Path, required=True)
    e.add_argument("--require-gpu", action="store_true", help="exit 1 without a GPU")
    w = sub.add_parser("write", help="collect WORK into one JSON")
    w.add_argument("--work", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--mode", choices=("gpu", "dry-run"), required=True)
    w.add_argument("--started-utc", default=None)
    w.add_argument("--total-s", type=float, default=None)
    w.add_argument("--budget-s", type=float, default=None)
    args = p.parse_args(argv)
    return env(args) if args.command == "env" else write(args)


if __name__ == "__main__":
    raise SystemExit(main())
