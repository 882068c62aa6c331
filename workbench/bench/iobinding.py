#!/usr/bin/env python
"""IO binding on vs off: the service's `OnnxSession.run` on one fixed input size, per artifact.

    python -m workbench.bench.iobinding --model-dir FP32 --model-dir FP16 [--side 512]
        [--batches 1,32] [--seconds 2] [--rounds 3] [--providers auto]

Per artifact and batch size, two sessions of the same graph with the service's options: one
with IO binding (the input copied into a device buffer kept per shape, only the [B,D] output
copied back), one with plain `session.run` (numpy in, numpy out). They run alternately in
rounds of about --seconds each on the same [B,3,side,side] input; images/s is the median over
rounds and `ratio_on_over_off` the median of the per-round ratios. `max_abs_diff` compares the
two sessions' descriptors for that input (the same kernels: it should be ~0). On the CPU
provider both paths share host memory, so the ratio is ~1 by construction; the figure is
meant for a GPU. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import loadavg, log


def images_per_s(run: Any, batch: np.ndarray, seconds: float) -> float:
    """Run `run(batch)` repeatedly for about `seconds` (at least 3 times): images/s."""
    n, t0 = 0, time.perf_counter()
    while True:
        run(batch)
        n += 1
        elapsed = time.perf_counter() - t0
        if n >= 3 and elapsed >= seconds:
            return n * batch.shape[0] / elapsed


def measure(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from app.artifacts import load_model_meta
    from app.config import InferenceSettings
    from app.inference.session import OnnxSession

    meta = load_model_meta(model_dir)
    settings = InferenceSettings(providers=args.providers)
    sessions = {
        flag: OnnxSession(model_dir / meta.onnx_file, meta, settings, io_binding=flag == "on")
        for flag in ("on", "off")
    }
    out: dict[str, Any] = {
        "name": meta.name,
        "precision": meta.precision,
        "providers": sessions["on"].active_providers,
        "device": sessions["on"].device,
        "side": args.side,
        "batches": [],
    }
    rng = np.random.default_rng(0)
    for b in args.batches:
        batch = rng.standard_normal((b, 3, args.side, args.side)).astype(np.float32)
        diff = float(np.abs(sessions["on"].run(batch) - sessions["off"].run(batch)).max())
        for s in sessions.values():  # warm-up: arenas, cuDNN algorithm choice
            images_per_s(s.run, batch, 0.0)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.rounds):
            for flag, s in sessions.items():
                rates[flag].append(images_per_s(s.run, batch, args.seconds))
        ratios = [a / b for a, b in zip(rates["on"], rates["off"], strict=True)]
        row = {
            "batch": b,
            "io_binding_on_images_per_s": round(float(np.median(rates["on"])), 2),
            "io_binding_off_images_per_s": round(float(np.median(rates["off"])), 2),
            "ratio_on_over_off": round(float(np.median(ratios)), 3),
            "rounds": args.rounds,
            "max_abs_diff": float(f"{diff:.3g}"),
        }
        out["batches"].append(row)
        log(
            f"iobinding {meta.precision} batch {b}: on {row['io_binding_on_images_per_s']} "
            f"img/s, off {row['io_binding_off_images_per_s']} img/s"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        required=True,
        help="artifact directory (repeatable)",
    )
    p.add_argument("--side", type=int, default=512, help="input height = width")
    p.add_argument(
        "--batches", type=lambda s: [int(v) for v in s.split(",") if v.strip()], default=[1, 32]
    )
    p.add_argument("--seconds", type=float, default=2.0, help="per round and path")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--providers", choices=("auto", "cuda", "tensorrt", "cpu"), default="auto")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    result = {"artifacts": [measure(d, args) for d in args.model_dir], "loadavg": loadavg()}
    text = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
