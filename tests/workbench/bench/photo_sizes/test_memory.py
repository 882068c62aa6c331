"""The memory probe: RSS sampling, the VmHWM reset, and one variant against a real server."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from workbench.bench.photo_sizes.memory import (
    MALLOC_DEFAULTS,
    VARIANTS,
    PeakSampler,
    memory_variant,
    reset_peak,
)


def test_the_sampler_sees_memory_this_process_holds_for_a_moment() -> None:
    with PeakSampler(os.getpid(), period=0.005) as sampler:
        block = bytearray(64 * 2**20)  # touched: resident
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.05)
        del block
    assert sampler.peak > 64


def test_reset_peak_works_on_a_process_of_ours() -> None:
    assert reset_peak(os.getpid()) is True
    assert reset_peak(2**22 + 12345) is False  # no such process


def test_variants_are_the_defaults_glibc_and_the_official_chain() -> None:
    labels = [label for label, _ in VARIANTS]
    assert labels[0] == "service defaults" and VARIANTS[0][1] == {}
    assert dict(VARIANTS)["official chain, glibc malloc defaults"] == {
        "inference.pixel_chain": "official",
        **MALLOC_DEFAULTS,
    }


def test_one_variant_against_a_real_server(
    tmp_path: Path, web_photos: list[tuple[str, bytes]], tiny_model: Path
) -> None:
    args = argparse.Namespace(ready_timeout=120.0, memory_searches=2, memory_concurrency=2)
    row = memory_variant(
        "service defaults", {}, tiny_model, tmp_path, web_photos, web_photos[:1], args
    )
    assert row["idle_rss_mib"] > 0 and row["search_latency"]["n"] == 2
    assert row["peak_over_idle_mib"] >= 0 and row["searches"] == 2
    assert row["peak_source"].startswith("VmHWM")
