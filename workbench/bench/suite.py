#!/usr/bin/env python
"""Benchmarks against the raw limits, measured in the same run. Prints JSON; renders a table.

    python -m workbench.bench                         # everything, default model, 100k + 1M
    python -m workbench.bench --quick                 # minutes -> seconds: tiny sizes, few requests
    python -m workbench.bench --sections store --sizes 100000,1000000
    python -m workbench.bench --sections embed --model-dir index_data/model --one-scale
    python -m workbench.bench --sections artifacts --model-dir FP32 --int8-dir INT8 --fp16-dir FP16
    python -m workbench.bench --sections milvus --milvus-n 100000 [--milvus-uri URI]
        [--milvus-dim 1280] [--milvus-index-types IVF_SQ8,HNSW]

Sections (each a child process, each figure next to its raw limit):
  embed      raw onnxruntime vs the service's Embedder vs HTTP POST /index and /search through
             uvicorn on 127.0.0.1 at concurrency 1, 8, 32 (workbench/bench/embed.py)
  store      durable adds, search QPS / latency, recall@10 vs exact, memory, next to raw FAISS
             with the same index and parameters, per size (workbench/bench/store.py)
  rerank     SuperGlobal at M=400, one BLAS thread and the default (workbench/bench/rerank.py)
  artifacts  int8 / fp16 variants: speed-up and accuracy cost vs fp32 (workbench/bench/artifacts.py)
  milvus     the Milvus store backend vs raw pymilvus vs the FAISS backend at --milvus-n vectors
             (workbench/bench/milvus.py; starts the `milvus` wheel's server unless --milvus-uri
             is given). Only when named in --sections: it needs the dev extra and, at 100k,
             several minutes. Its figures are in the JSON; the table in docs/BENCHMARKS.md is
             written from them by hand.
  photos     web (1024 px), phone (12 MP, 4032x3024 ~2 MB) and camera (36 MP) JPEGs made from
             the shared photos at run time: per-stage CPU (decode, resize, thumbnail) next to
             raw inference, POST /index with 8 files a request from 2 clients vs raw
             onnxruntime, and RSS with 3 concurrent 36 MP searches (workbench/bench/photos.py)

Without --model-dir the default model of `make run` is exported to a temp dir first, with the
same command as `make model` (`python -m workbench.export --default`: EfficientNet-Lite0 with its
ImageNet weights + GeM, 512 px, scales 0.7071 and 1.0; well under a minute on 2 cores); with
--quick, a tiny 2-conv graph is used instead.

--markdown PATH (default docs/BENCHMARKS.md, not in --quick) rewrites the generated block of
that file (between the bench markers) and keeps the prose around it.

This module holds the options; the sections' command lines are in workbench/bench/sections.py,
the targets in workbench/bench/targets.py, the Markdown in workbench/bench/report/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from workbench.bench.common import REPO, loadavg, log, machine_info
from workbench.bench.measured_model import prepare_model
from workbench.bench.report.block import write_markdown
from workbench.bench.report.markdown import markdown
from workbench.bench.sections import NEED_MODEL, SECTIONS, run_sections
from workbench.bench.targets import targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes and counts")
    p.add_argument(
        "--sections",
        default=None,
        help=f"comma list of {','.join(SECTIONS)} "
        "(default: embed,store,rerank, plus artifacts when variants are given)",
    )
    p.add_argument("--model-dir", type=Path, help="artifact to benchmark (default: export)")
    p.add_argument("--photos", type=Path, help="JPEG folder (default ../shared/data/photos)")
    p.add_argument("--concurrency", default=None, help="default 1,8,32 (quick: 1,4)")
    p.add_argument("--requests", type=int, default=0, help="HTTP/embedder requests per level")
    p.add_argument(
        "--one-scale",
        action="store_true",
        help="also run the embed section at one scale (1.0) of max_side",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GROUP.FIELD=VALUE",
        help="service settings override for the embed section (repeatable)",
    )
    p.add_argument("--sizes", default=None, help="store sizes (default 100000,1000000)")
    p.add_argument(
        "--milvus-n",
        type=int,
        default=None,
        help="vectors for the milvus section (default 100000; quick: 3000)",
    )
    p.add_argument(
        "--milvus-uri",
        default=None,
        help="milvus section: an existing server (default: start the wheel's)",
    )
    p.add_argument(
        "--milvus-dim",
        type=int,
        default=None,
        help="milvus section: vector dimension (default 512; 1280 = the default model)",
    )
    p.add_argument(
        "--milvus-index-types",
        default=None,
        help="milvus section: comma list measured on the same rows (default HNSW; "
        "e.g. IVF_SQ8,HNSW)",
    )
    p.add_argument("--int8-dir", type=Path, help="int8 artifact for the artifacts section")
    p.add_argument("--fp16-dir", type=Path, help="fp16 artifact for the artifacts section")
    p.add_argument(
        "--draft-variant",
        action="store_true",
        help="artifacts section: also the fp32 model with jpeg_draft decoding",
    )
    p.add_argument("--json-out", type=Path, help="also write the JSON here")
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="rewrite the generated block of this file (default docs/BENCHMARKS.md; "
        "none in --quick)",
    )
    p.add_argument("--no-markdown", action="store_true")
    p.add_argument(
        "--markdown-tag",
        default="",
        help="name of the generated block to replace (several runs, one file)",
    )
    return p.parse_args(argv)


def _command(argv: list[str]) -> str:
    """The command line as a reader can repeat it: paths outside the repo (temp dirs, this
    machine's folders) become placeholders, paths inside it become relative."""
    out = []
    for arg in argv:
        path = Path(arg)
        if path.is_absolute():
            try:
                arg = (
                    os.path.relpath(path, REPO)
                    if path.resolve().is_relative_to(REPO.parent)
                    else f"<{path.name}>"
                )
            except ValueError:
                arg = f"<{path.name}>"
        out.append(arg)
    return "python -m workbench.bench " + " ".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.concurrency = args.concurrency or ("1,4" if args.quick else "1,8,32")
    args.sizes = args.sizes or ("3000" if args.quick else "100000,1000000")
    sections = (
        args.sections.split(",")
        if args.sections
        else ["embed", "store", "rerank"]
        + (["artifacts"] if args.int8_dir or args.fp16_dir else [])
    )
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    result: dict[str, Any] = {
        "command": _command(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "quick": args.quick,
    }
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        model_dir = (
            prepare_model(args.model_dir, args.quick, work) if NEED_MODEL & set(sections) else None
        )
        result.update(run_sections(args, sections, model_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_at_end"] = loadavg()
    result["targets"] = targets(result)
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text)
    md_path = args.markdown or (None if args.quick else REPO / "docs" / "BENCHMARKS.md")
    if md_path is not None and not args.no_markdown:
        write_markdown(md_path, markdown(result), args.markdown_tag)
        log(f"wrote {os.path.relpath(md_path, REPO)}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
