"""The suite's sections: each one is a benchmark run as a child process (its JSON becomes the
section's figures). The `*_argv` functions build each child's command line from the suite's
options; `run_sections` runs the chosen sections in the suite's order."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from workbench.bench.common import log, run_json_child

SECTIONS = ("embed", "store", "rerank", "artifacts", "milvus", "photos")
# The sections that measure an artifact (the others make their own vectors).
NEED_MODEL = frozenset({"embed", "artifacts", "rerank", "photos"})
# BLAS on one thread: what the service's rerank.blas_threads sets.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def embed_argv(args: argparse.Namespace, model_dir: Path, scales: str | None) -> list[str]:
    """workbench/bench/embed.py; `scales` overrides the artifact's (e.g. "1.0")."""
    argv = [
        "-m",
        "workbench.bench.embed",
        "--model-dir",
        str(model_dir),
        "--concurrency",
        args.concurrency,
    ]
    if args.photos:
        argv += ["--photos", str(args.photos)]
    if args.requests:
        argv += ["--requests", str(args.requests)]
    if scales:
        argv += ["--scales", scales]
    if args.quick:
        argv += [
            "--raw-images",
            "3",
            "--rounds",
            "1",
            "--photos-limit",
            "4",
            "--requests",
            str(args.requests or 4),
            "--http-repeats",
            "1",
        ]
    for item in args.set:
        argv += ["--set", item]
    return argv


def store_argv(args: argparse.Namespace, size: int) -> list[str]:
    """workbench/bench/store.py at one size."""
    argv = ["-m", "workbench.bench.store", "--n", str(size)]
    if args.quick:
        argv += [
            "--queries",
            "100",
            "--single",
            "50",
            "--rounds",
            "1",
            "--batch",
            "1000",
            "--nprobes",
            "16",
        ]
    return argv


def rerank_argv(args: argparse.Namespace, model_dir: Path | None) -> list[str]:
    """workbench/bench/rerank.py at M=400."""
    argv = ["-m", "workbench.bench.rerank", "--m", "400"]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    if args.quick:
        argv += ["--queries", "20", "--pool", "5000", "--contention-seconds", "1"]
    return argv


def milvus_argv(args: argparse.Namespace) -> list[str]:
    """The workbench/bench/milvus.py command line of the milvus section."""
    n = args.milvus_n or (3000 if args.quick else 100_000)
    argv = ["-m", "workbench.bench.milvus", "--n", str(n)]
    if args.milvus_uri:
        argv += ["--milvus-uri", args.milvus_uri]
    if args.milvus_dim:
        argv += ["--dim", str(args.milvus_dim)]
    if args.milvus_index_types:
        argv += ["--index-types", args.milvus_index_types]
    if args.quick:
        argv += ["--queries", "100", "--single", "50", "--raw-add-n", "1000"]
    return argv


def photos_argv(args: argparse.Namespace, model_dir: Path) -> list[str]:
    """workbench/bench/photos.py."""
    argv = ["-m", "workbench.bench.photos", "--model-dir", str(model_dir)]
    if args.photos:
        argv += ["--photos", str(args.photos)]
    if args.quick:
        argv += [
            "--photos-limit",
            "4",
            "--phone-count",
            "1",
            "--camera-count",
            "1",
            "--requests",
            "1",
            "--files-per-request",
            "2",
            "--repeats",
            "1",
            "--memory-searches",
            "2",
        ]
    return argv


def artifacts_argv(args: argparse.Namespace, model_dir: Path) -> list[str]:
    """workbench/bench/artifacts.py: `model_dir` as the fp32 reference, the given variants."""
    argv = ["-m", "workbench.bench.artifacts", "--reference", str(model_dir)]
    if args.int8_dir:
        argv += ["--variant", f"int8={args.int8_dir}"]
    if args.fp16_dir:
        argv += ["--variant", f"fp16={args.fp16_dir}"]
    if args.draft_variant:
        argv += ["--variant", f"fp32+jpeg_draft={model_dir}@inference.jpeg_draft=true"]
    if args.photos:
        argv += ["--photos", str(args.photos)]
    if args.quick:
        argv += [
            "--photos-limit",
            "4",
            "--transforms",
            "crop_center_70,jpeg_q20",
            "--speed-images",
            "2",
            "--rounds",
            "1",
        ]
    return argv


def run_sections(
    args: argparse.Namespace, sections: list[str], model_dir: Path | None
) -> dict[str, Any]:
    """Each chosen section's JSON under its name (embed_one_scale beside embed with
    --one-scale; store per size), in the suite's order whatever the order asked."""
    result: dict[str, Any] = {}
    if "embed" in sections:
        assert model_dir is not None
        log("section embed ...")
        result["embed"] = run_json_child(embed_argv(args, model_dir, None))
        if args.one_scale:
            log("section embed (one scale) ...")
            result["embed_one_scale"] = run_json_child(embed_argv(args, model_dir, "1.0"))
    if "store" in sections:
        log("section store ...")
        result["store"] = {}
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            log(f"store: n={size} ...")
            result["store"][str(size)] = run_json_child(store_argv(args, size))
    if "rerank" in sections:
        log("section rerank ...")
        argv = rerank_argv(args, model_dir)
        result["rerank"] = {
            "one_thread": run_json_child(argv, env=ONE_BLAS_THREAD),
            "default_threads": run_json_child(argv),
        }
    if "artifacts" in sections:
        assert model_dir is not None
        log("section artifacts ...")
        result["artifacts"] = run_json_child(artifacts_argv(args, model_dir))
    if "photos" in sections:
        assert model_dir is not None
        log("section photos ...")
        result["photos"] = run_json_child(photos_argv(args, model_dir))
    if "milvus" in sections:
        log("section milvus ...")
        result["milvus"] = run_json_child(milvus_argv(args))
    return result
