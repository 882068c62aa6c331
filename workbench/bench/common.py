"""Small helpers shared by the benchmarks (workbench/bench/*.py): latency summaries,
process memory from /proc, machine description, child processes that print JSON.

Benchmarks print JSON; they are not timed tests. Every figure is reported next to a raw limit
measured in the same run, because the machines they run on are shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.threads import usable_cores

REPO = Path(__file__).resolve().parents[2]


def summarize_s(samples: Sequence[float]) -> dict[str, float | int]:
    """Latency samples in seconds -> {n, p50_ms, p99_ms, mean_ms, max_ms}."""
    a = np.asarray(samples, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "max_ms": round(float(a.max()), 3),
    }


def ratio(value: float | None, limit: float | None, digits: int = 3) -> float | None:
    if value is None or limit is None or not limit:
        return None
    return round(float(value) / float(limit), digits)


def rss(pid: int | None = None) -> dict[str, float]:
    """Resident memory of a process in MiB (VmRSS, RssAnon, RssFile) from /proc/PID/status."""
    path = Path(f"/proc/{pid or 'self'}/status")
    out: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024.0, 1)  # kB -> MiB
    except OSError:
        pass
    return {
        "rss_mib": out.get("VmRSS", float("nan")),
        "anon_mib": out.get("RssAnon", float("nan")),
        "file_mib": out.get("RssFile", float("nan")),
        "peak_mib": out.get("VmHWM", float("nan")),
    }


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) a process has used so far, from /proc/PID/stat.

    Robust to other users' load where wall-clock throughput is not: a thread is charged only
    while it runs. Ratios of CPU seconds per image show what the service adds to the model.
    """
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge the figures: cores, CPU, load, library versions."""
    cpu = platform.processor() or ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in ("numpy", "onnxruntime", "faiss", "PIL"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            continue
    return {
        "cores": usable_cores(),
        "cpu": cpu,
        "simd": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}),
        "memory_gib": _memory_gib(),
        "loadavg_at_start": loadavg(),
        "versions": versions,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return float("nan")



def run_json_child(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run `python argv...` from the repo root; its stdout is, or ends with, a JSON object
    (one line, or the whole output when it is indented, as workbench/export.py prints it).

    stderr is passed through (progress logs), so a long child shows what it is doing.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {proc.returncode}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(argv)} printed nothing")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return json.loads(proc.stdout)


def log(message: str) -> None:
    """Progress to stderr (stdout carries the JSON)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
