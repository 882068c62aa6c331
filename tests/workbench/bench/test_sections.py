"""The suite's sections: the command line each child benchmark gets from the suite's options
(real runs are in test_suite.py; the milvus section at 100k takes minutes, so not here)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from workbench.bench.sections import (
    SECTIONS,
    artifacts_argv,
    embed_argv,
    milvus_argv,
    photos_argv,
    rerank_argv,
    store_argv,
)
from workbench.bench.suite import parse_args

MODEL = Path("model")


def _args(*argv: str) -> argparse.Namespace:
    """The suite's options as main() completes them."""
    args = parse_args(list(argv))
    args.concurrency = args.concurrency or ("1,4" if args.quick else "1,8,32")
    return args


def test_milvus_section_runs_bench_milvus_with_its_size_and_server() -> None:
    """`--sections milvus` runs workbench/bench/milvus.py (its own defaults otherwise)."""
    assert milvus_argv(parse_args(["--sections", "milvus"])) == [
        "-m",
        "workbench.bench.milvus",
        "--n",
        "100000",
    ]
    assert milvus_argv(parse_args(["--milvus-n", "20000", "--milvus-uri", "http://m:19530"])) == [
        "-m",
        "workbench.bench.milvus",
        "--n",
        "20000",
        "--milvus-uri",
        "http://m:19530",
    ]
    assert milvus_argv(
        parse_args(
            ["--milvus-n", "200000", "--milvus-dim", "1280", "--milvus-index-types", "IVF_SQ8,HNSW"]
        )
    ) == [
        "-m",
        "workbench.bench.milvus",
        "--n",
        "200000",
        "--dim",
        "1280",
        "--index-types",
        "IVF_SQ8,HNSW",
    ]
    quick = milvus_argv(parse_args(["--quick"]))
    assert quick[:4] == ["-m", "workbench.bench.milvus", "--n", "3000"]


def test_every_section_runs_a_benchmark_module_that_exists() -> None:
    args = _args("--quick", "--int8-dir", "int8")
    argvs = [
        embed_argv(args, MODEL, None),
        store_argv(args, 3000),
        rerank_argv(args, MODEL),
        artifacts_argv(args, MODEL),
        milvus_argv(args),
        photos_argv(args, MODEL),
    ]
    modules = [argv[1] for argv in argvs]
    assert modules == [f"workbench.bench.{name}" for name in SECTIONS]
    for argv, module in zip(argvs, modules, strict=True):
        assert argv[0] == "-m" and importlib.util.find_spec(module) is not None


def test_quick_shrinks_each_section_and_the_options_pass_through() -> None:
    full = _args("--photos", "pics", "--set", "inference.max_batch=4", "--set", "a.b=1")
    assert embed_argv(full, MODEL, "1.0") == [
        "-m",
        "workbench.bench.embed",
        "--model-dir",
        "model",
        "--concurrency",
        "1,8,32",
        "--photos",
        "pics",
        "--scales",
        "1.0",
        "--set",
        "inference.max_batch=4",
        "--set",
        "a.b=1",
    ]
    quick = _args("--quick", "--requests", "9")
    assert embed_argv(quick, MODEL, None)[4:] == [
        "--concurrency",
        "1,4",
        "--requests",
        "9",
        "--raw-images",
        "3",
        "--rounds",
        "1",
        "--photos-limit",
        "4",
        "--requests",
        "9",
        "--http-repeats",
        "1",
    ]
    assert store_argv(full, 100_000) == ["-m", "workbench.bench.store", "--n", "100000"]
    assert "--nprobes" in store_argv(quick, 3000)
    assert rerank_argv(full, None) == ["-m", "workbench.bench.rerank", "--m", "400"]
    assert photos_argv(full, MODEL) == [
        "-m",
        "workbench.bench.photos",
        "--model-dir",
        "model",
        "--photos",
        "pics",
    ]
    assert photos_argv(quick, MODEL)[-2:] == ["--memory-searches", "2"]


def test_artifacts_section_names_each_variant_against_the_reference() -> None:
    args = _args("--int8-dir", "i8", "--fp16-dir", "f16", "--draft-variant")
    assert artifacts_argv(args, MODEL) == [
        "-m",
        "workbench.bench.artifacts",
        "--reference",
        "model",
        "--variant",
        "int8=i8",
        "--variant",
        "fp16=f16",
        "--variant",
        "fp32+jpeg_draft=model@inference.jpeg_draft=true",
    ]
