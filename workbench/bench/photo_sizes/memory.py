"""The server's memory with 36 MP searches: a fresh server per variant (the service's
defaults; glibc's malloc defaults; the official chain; both), its idle RSS after warm-up, the
peak while --memory-searches searches of camera photos run --memory-concurrency at a time
(VmHWM, reset before through /proc/PID/clear_refs, and sampled every 10 ms), and the RSS still
held 5 s after the last answer."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from workbench.bench.common import loadavg, log, rss, summarize_s
from workbench.servers.service import Server, server_env

# The memory settings at glibc's own defaults (0 = leave malloc alone).
MALLOC_DEFAULTS = {
    "memory.malloc_arena_max": "0",
    "memory.mmap_threshold_kib": "0",
    "memory.trim_threshold_kib": "0",
    "memory.trim_after_pixels": "0",
}
OFFICIAL_CHAIN = {"inference.pixel_chain": "official"}
# (label, service settings overrides), one fresh server each.
VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("service defaults", {}),
    ("glibc malloc defaults", MALLOC_DEFAULTS),
    ("official chain", OFFICIAL_CHAIN),
    ("official chain, glibc malloc defaults", {**OFFICIAL_CHAIN, **MALLOC_DEFAULTS}),
)


class PeakSampler:
    """RSS of a process every `period` seconds in a thread; `peak` in MiB."""

    def __init__(self, pid: int, period: float = 0.01) -> None:
        self.pid, self.period, self.peak = pid, period, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid)["rss_mib"])
            time.sleep(self.period)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


async def search_block(
    base: str, photos: list[tuple[str, bytes]], n: int, concurrency: int
) -> list[float]:
    """`n` POST /search (top 10), `concurrency` at a time: seconds per search."""
    import httpx

    counter = iter(range(n))
    lat: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=900.0) as client:

        async def worker() -> None:
            for i in counter:
                name, data = photos[i % len(photos)]
                t = time.perf_counter()
                r = await client.post(
                    "/search", files={"file": (name, data, "image/jpeg")}, data={"top_k": "10"}
                )
                if r.status_code != 200:
                    raise RuntimeError(f"/search: {r.status_code} {r.text[:300]}")
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat


def memory_variant(
    label: str,
    sets: dict[str, str],
    model_dir: Path,
    work: Path,
    web: list[tuple[str, bytes]],
    camera: list[tuple[str, bytes]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """A fresh server with the `sets` overrides: warmed on 4 web searches, then idle RSS, the
    peak over idle during the camera searches, and what it still holds 5 s later (MiB)."""
    data_dir = work / f"mem-{len(list(work.iterdir()))}"
    server = Server(server_env(data_dir, model_dir, sets), work / f"{data_dir.name}.log")
    try:
        server.wait_ready(args.ready_timeout)
        asyncio.run(
            search_block(
                server.base,
                web[:4],
                4,
                1,
            )
        )  # warm: shapes, arenas
        time.sleep(1.0)
        idle = server.rss()["rss_mib"]
        reset = reset_peak(server.proc.pid)
        with PeakSampler(server.proc.pid) as sampler:
            lat = asyncio.run(
                search_block(server.base, camera, args.memory_searches, args.memory_concurrency)
            )
        hwm = server.rss()["peak_mib"] if reset else float("nan")
        time.sleep(5.0)
        held = server.rss()["rss_mib"]
    finally:
        server.stop()
    peak = max(sampler.peak, hwm) if reset else sampler.peak
    return {
        "variant": label,
        "overrides": sets,
        "idle_rss_mib": idle,
        "peak_over_idle_mib": round(peak - idle, 1),
        "held_5s_over_idle_mib": round(held - idle, 1),
        "peak_source": "VmHWM after clear_refs + 10 ms samples" if reset else "samples",
        "searches": args.memory_searches,
        "concurrency": args.memory_concurrency,
        "search_latency": summarize_s(lat),
        "loadavg": loadavg(),
    }


def memory_rows(
    args: argparse.Namespace, work: Path, sets: dict[str, list[tuple[str, bytes]]]
) -> list[dict[str, Any]]:
    """One row per variant: warmed on web photos, measured on the camera photos."""
    rows = []
    for label, overrides in VARIANTS:
        row = memory_variant(
            label, overrides, args.model_dir, work, sets["web"], sets["camera"], args
        )
        rows.append(row)
        log(
            f"photos: memory {label}: peak +{row['peak_over_idle_mib']} MiB, held "
            f"+{row['held_5s_over_idle_mib']} MiB"
        )
    return rows
