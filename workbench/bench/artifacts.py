#!/usr/bin/env python
"""Precision variants of one model (int8 for CPU, fp16 for GPU) against the fp32 artifact:
speed on this machine and accuracy cost on the near-duplicate photo benchmark.

    python -m workbench.bench.artifacts --reference DIR_FP32 --variant int8=DIR --variant fp16=DIR
        [--photos ../shared/data/photos] [--transforms all]

Per artifact, through the service's own Runtime (decode, preprocessing, batcher, session):
descriptors of every photo and of its transformed copies (models/evaluation/near_duplicates.py).
Accuracy: cosine of each descriptor to the fp32 one, near-duplicate recall@1 (exact search
among the photos), and top-1 agreement with fp32 (same top-1 id for the same query).
Speed: raw onnxruntime images/s on the same preprocessed inputs, fp32 and the variant measured
alternately in rounds, ratio = variant / fp32 per round (median).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import loadavg, log
from workbench.bench.inputs import default_photos_dir, load_photos, prepare_tensors
from workbench.bench.raw_ort import RawOrt
from workbench.servers.service import parse_sets, settings_for


def descriptors(
    model_dir: Path, blobs: list[bytes], work: Path, sets: dict[str, str]
) -> np.ndarray:
    from app.metrics import Metrics
    from app.runtime import Runtime

    runtime = Runtime.start(settings_for(work, model_dir, sets), Metrics())
    try:
        return np.stack([runtime.embedder.embed_bytes_sync(b) for b in blobs])
    finally:
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    from app.artifacts import load_model_meta
    from models.evaluation.near_duplicates import TRANSFORMS, transformed_queries

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="fp32 artifact directory")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=DIR[@G.F=V,...]",
                   help="an artifact, optionally with service settings (e.g. "
                        "draft=DIR@inference.jpeg_draft=true for the same model, draft decode)")
    p.add_argument("--photos", type=Path)
    p.add_argument("--photos-limit", type=int, default=0)
    p.add_argument("--transforms", default="all", help="comma list or 'all'")
    p.add_argument("--speed-images", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)

    photos = load_photos(args.photos or default_photos_dir(), args.photos_limit)
    names = list(TRANSFORMS) if args.transforms == "all" else args.transforms.split(",")
    db_ids = [n for n, _ in photos]
    queries: list[tuple[str, str, bytes]] = []  # (source, transform, jpeg)
    for name, data in photos:
        for t, q in transformed_queries(data, names).items():
            queries.append((name, t, q))
    blobs = [d for _, d in photos] + [q for _, _, q in queries]
    variants = {"fp32": args.reference}
    variant_sets: dict[str, dict[str, str]] = {"fp32": {}}
    for item in args.variant:
        key, _, value = item.partition("=")
        directory, _, sets = value.partition("@")
        variants[key] = Path(directory)
        variant_sets[key] = parse_sets([x for x in sets.split(",") if x])

    out: dict[str, Any] = {"photos": len(photos), "queries": len(queries), "transforms": names,
                           "artifacts": {}}
    desc: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        for i, (key, model_dir) in enumerate(variants.items()):
            log(f"artifacts: {key}: {len(blobs)} descriptors through the service runtime ...")
            desc[key] = descriptors(model_dir, blobs, Path(tmp) / f"s{i}", variant_sets[key])

        # Speed: raw onnxruntime, reference and variant alternately.
        ref_meta = load_model_meta(args.reference)
        settings = settings_for(Path(tmp) / "speed", args.reference, {})
        tensors = prepare_tensors([d for _, d in photos][: args.speed_images], settings,
                                  ref_meta.preprocessing)
        # Speed of distinct graphs only (a settings-only variant runs the same graph).
        sessions = {k: RawOrt(d / load_model_meta(d).onnx_file, settings)
                    for k, d in variants.items() if k == "fp32" or not variant_sets[k]}
        for s in sessions.values():
            s.per_image(tensors[:2])  # warm-up
        speed: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            for k, s in sessions.items():
                speed[k].append(s.per_image(tensors)[0])

    ref = desc["fp32"]
    n_db = len(photos)

    def top1(d: np.ndarray) -> np.ndarray:
        return np.argmax(d[n_db:] @ d[:n_db].T, axis=1)  # [Q] index into db

    truth = np.array([db_ids.index(src) for src, _, _ in queries])
    ref_top1 = top1(ref)
    for key in variants:
        d = desc[key]
        cos = np.sum(d * ref, axis=1)  # unit vectors
        t1 = top1(d)
        per_transform = {}
        for t in names:
            sel = np.array([tt == t for _, tt, _ in queries])
            per_transform[t] = round(float(np.mean(t1[sel] == truth[sel])), 3)
        meta = load_model_meta(variants[key])
        timed = speed.get(key) or []
        ratios = [v / r for v, r in zip(timed, speed["fp32"], strict=False)]
        out["artifacts"][key] = {
            "precision": meta.precision,
            "settings": variant_sets[key],
            "megabytes": round((variants[key] / meta.onnx_file).stat().st_size / 1e6, 1),
            "raw_images_per_s": round(float(np.median(timed)), 3) if timed else None,
            "speedup_vs_fp32": round(float(np.median(ratios)), 3) if ratios else None,
            "cosine_to_fp32": {"mean": round(float(cos.mean()), 6),
                               "min": round(float(cos.min()), 6),
                               "p1": round(float(np.percentile(cos, 1)), 6),
                               "max_distance": float(f"{1.0 - float(cos.min()):.2e}")},
            "recall_at_1": round(float(np.mean(t1 == truth)), 4),
            "recall_at_1_per_transform": per_transform,
            "top1_agreement_with_fp32": round(float(np.mean(t1 == ref_top1)), 4),
        }
    out["loadavg_at_end"] = loadavg()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
