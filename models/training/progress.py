"""Progress reporting: the periodic log line (loss, lr, images/s, ETA) and CSV metric files.

Two CSV files a person can plot (spreadsheet, pandas, gnuplot):
- `train_log.csv`: one row per `log_every` optimiser steps (step, epoch, loss, accuracy, lr,
  images/s, elapsed seconds);
- `epochs.csv`: one row per epoch (train loss and accuracy, val accuracy, retrieval recall@1 and
  mAP, lr, throughput, duration). Epoch 0 is the evaluation before training, when it ran.
On resume, rows beyond the checkpoint's position are dropped first, so a crashed-and-resumed run
still has exactly one row per step and epoch.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TRAIN_FIELDS = (
    "global_step", "epoch", "epoch_progress", "loss", "train_top1", "lr", "images_per_s",
    "elapsed_s", "triplet_loss",
)
EPOCH_FIELDS = (
    "epoch", "global_step", "train_loss", "train_top1", "val_top1", "val_top5", "val_images",
    "retrieval_recall_at_1", "retrieval_recall_at_5", "retrieval_map", "retrieval_queries",
    "retrieval_gallery", "lr", "images_per_s", "epoch_s", "eval_s", "train_triplet_loss",
)


class CsvLog:
    """Append-only CSV with a fixed header; values are written as they come (blank = missing)."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path = path
        self.fields = tuple(fields)

    def truncate(self, key: str, last: float) -> None:
        """Keep only the rows whose `key` <= last (resume after a crash)."""
        if not self.path.is_file():
            return
        with self.path.open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get(key) and float(r[key]) <= last]
        self._write(rows, mode="w")

    def append(self, row: Mapping[str, Any]) -> None:
        self._write([row], mode="a")

    def _write(self, rows: Sequence[Mapping[str, Any]], mode: str) -> None:
        new = mode == "w" or not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open(mode, newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row.get(k)) for k in self.fields})

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class StepTimer:
    """Images/s over the last logging window and an ETA from the run's mean step time.

    The first window after (re)start includes warm-up (allocator, cudnn autotuning, worker
    start), so the ETA uses the windows after it when there are any.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.window_start = self.start
        self.window_images = 0
        self.window_steps = 0
        self.steady_time = 0.0
        self.steady_steps = 0
        self.windows = 0

    def update(self, images: int) -> None:
        self.window_images += images
        self.window_steps += 1

    def close_window(self) -> tuple[float, float]:
        """(images/s, seconds per step) of the window just ended; starts a new window."""
        now = time.perf_counter()
        elapsed = max(now - self.window_start, 1e-9)
        rate = self.window_images / elapsed
        per_step = elapsed / max(self.window_steps, 1)
        if self.windows > 0:
            self.steady_time += elapsed
            self.steady_steps += self.window_steps
        self.windows += 1
        self.window_start, self.window_images, self.window_steps = now, 0, 0
        return rate, per_step

    def eta(self, remaining_steps: int, fallback_per_step: float) -> float:
        per_step = self.steady_time / self.steady_steps if self.steady_steps else fallback_per_step
        return remaining_steps * per_step

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
