#!/usr/bin/env python
"""Real photo sizes at the raw limit: web (1024 px), phone (12 MP) and camera (36 MP) JPEGs.

    python -m workbench.bench.photos --model-dir DIR [--photos ../shared/data/photos]
        [--requests 6] [--files-per-request 8] [--clients 2] [--no-memory]

Prints one JSON object (last stdout line); the suite (`python -m workbench.bench`) runs it as
its `photos` section.

Inputs: `web` = the shared JPEGs as they are; `phone` = the first --phone-count of them fitted
(crop + bicubic upscale) to 4032x3024 with seeded grain and saved at quality 92 (~2 MB, like a
phone's JPEG); `camera` = the same at 7360x4912 (36 MP). They are made in memory at every run
(deterministic: seeded); never commit them.

Each part is a module of workbench/bench/photo_sizes/ (inputs, stages, alternatives,
duplicate_check, http_index, memory); this one holds the options and the order of the run.

1. stages: CPU ms per image of every stage of the service's chain on one thread (decode,
   which includes the long-side cap; resize = crop + scales; thumbnail), next to the raw
   model (onnxruntime on the exact tensors, batch 1, wall ms) and, for comparison in the
   same run, the chain before the one-decode path (full decode, numpy LANCZOS cap, cv2-style
   float resize, thumbnail decoded again from the bytes).
   duplicate_check: CPU ms per image of POST /index's duplicate check (a by-id search of each
   new item, with the copy verdict's SIFT geometry), in process over the web photos, for
   distinct uploads and for re-uploads (see `duplicate_check_cost`).
2. http: uvicorn app.main:app, --clients clients each sending POST /index with
   --files-per-request files: images/s against raw onnxruntime measured on the same photos'
   model inputs right before and after each block (the ratio); the server's own per-stage
   timings (decode, resize, thumbnail, inference, store, duplicates) per image.
3. memory: a fresh server per variant (the service's defaults; glibc's malloc defaults; the
   official chain; both): idle RSS after warm-up, the peak while 12 searches of 36 MP photos
   run 3 at a time (VmHWM, reset before through /proc/PID/clear_refs, and sampled every
   10 ms), and RSS still held 5 s after the last answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from workbench.bench.common import log
from workbench.bench.inputs import default_photos_dir, load_photos, prepare_tensors
from workbench.bench.photo_sizes.alternatives import batch_cost, resize_options
from workbench.bench.photo_sizes.duplicate_check import duplicate_check_cost
from workbench.bench.photo_sizes.http_index import http_rows
from workbench.bench.photo_sizes.inputs import describe, make_sets
from workbench.bench.photo_sizes.memory import memory_rows
from workbench.bench.photo_sizes.stages import resolved_chain, stage_costs
from workbench.bench.raw_ort import RawOrt
from workbench.servers.service import settings_for


def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.artifacts import load_model_meta

    meta = load_model_meta(args.model_dir)
    photos = load_photos(args.photos or default_photos_dir(), args.photos_limit)
    sets = make_sets(photos, args.phone_count, args.camera_count)
    work = Path(tempfile.mkdtemp(prefix="bench-photos-"))
    try:
        settings = settings_for(work / "inproc", args.model_dir, {})
        raw = RawOrt(args.model_dir / meta.onnx_file, settings)
        result: dict[str, Any] = {
            "model": {
                "name": meta.name,
                "max_side": meta.preprocessing.max_side,
                "scales": list(meta.preprocessing.scales),
                "pixel_chain": resolved_chain(settings, meta),
            },
            "inputs": {k: describe(v) for k, v in sets.items()},
            "threads": {
                "intra_op": settings.resolved_intra_op_threads(),
                "decode": settings.resolved_decode_threads(),
            },
        }
        tensors = {
            k: prepare_tensors([b for _, b in v], settings, meta.preprocessing)
            for k, v in sets.items()
        }
        for t in tensors.values():
            raw.per_image(t[:4])  # first runs per shape grow the arenas: not measured
        result["resize_options_cpu_ms"] = resize_options(sets["phone"][0][1], meta.preprocessing)
        result["onnxruntime_cpu_ms_per_image_by_batch"] = batch_cost(raw, tensors["phone"][0])
        log(
            f"photos: resizers {result['resize_options_cpu_ms']}; batch cost "
            f"{result['onnxruntime_cpu_ms_per_image_by_batch']}"
        )
        result["stages"] = {}
        for name, blobs in sets.items():
            result["stages"][name] = stage_costs([b for _, b in blobs], settings, meta, raw)
            log(
                f"photos: stages {name}: {result['stages'][name]['cpu_ms_per_image']} "
                f"(raw inference {result['stages'][name]['raw_inference_ms_per_image']} ms)"
            )
        web_blobs = [b for _, b in sets["web"]]
        result["duplicate_check"] = [
            duplicate_check_cost(web_blobs, settings, work, uploads)
            for uploads in ("distinct", "repeated")
        ]
        log(f"photos: duplicate check {result['duplicate_check']}")
        if args.http:
            result["http"] = http_rows(args, work, sets, tensors, raw)
        if args.memory:
            result["memory_36mp"] = memory_rows(args, work, sets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--photos", type=Path, help="folder of JPEGs (default ../shared/data/photos)")
    p.add_argument("--photos-limit", type=int, default=0, help="0 = all")
    p.add_argument("--phone-count", type=int, default=8)
    p.add_argument("--camera-count", type=int, default=4)
    p.add_argument("--requests", type=int, default=6, help="POST /index requests per block")
    p.add_argument("--files-per-request", type=int, default=8)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="blocks per HTTP row")
    p.add_argument("--no-http", dest="http", action="store_false")
    p.add_argument(
        "--duplicate-check",
        choices=("on", "off", "both"),
        default="both",
        help="HTTP rows with POST /index's per-file duplicate report, without it "
        "(check_duplicates=false), or both",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--memory-searches", type=int, default=12)
    p.add_argument("--memory-concurrency", type=int, default=3)
    p.add_argument("--ready-timeout", type=float, default=300.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
