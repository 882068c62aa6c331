"""Revisited Oxford / Paris evaluation (mAP and mP@k, Easy / Medium / Hard) of a model.

    python -m workbench.evaluate --data-root ../data --dataset roxford5k \
        --model-dir index_data/model [--search exact|ivfpq] [--rerank superglobal] \
        [--distractors ../data/revisitop1m/revisitop1m.txt] [--cache-dir eval_cache] \
        [--out results.json]
    python -m workbench.evaluate --data-root ../data --dataset rparis6k \
        --checkpoint r50_dolg_512.pyth

Extraction is the official DOLG test path (docs/ALGORITHMS.md 1.7) built from the service's own
preprocessing (app.inference.preprocess): decode, long-side cap (never triggers on ROxf/RPar,
whose images are <= 1024 px), query crop to its box with int() truncation, 5 scales with
cv2.INTER_LINEAR-equivalent resizing, per-scale L2, mean, L2. The network runs either as the
exported ONNX artifact through the service's OnnxSession (--model-dir) or as a torch
checkpoint, official or ours (--checkpoint). Descriptors are cached (--cache-dir) so search and
re-ranking experiments do not extract again.

Search: exact inner product over everything (full rankings, what the protocol assumes) or the
service's FAISS IVF-PQ store with exact re-scoring (rankings truncated at --top-k: positives
beyond it count as missed, so mAP is a lower bound). --rerank superglobal re-ranks the top-M
with the service's SuperGlobal implementation. Prints the table, writes JSON with --out.
See docs/EVALUATION.md for reproducing the published DOLG numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models.evaluation.revisitop import RevisitopDataset
from workbench.cli_errors import run_cli
from workbench.evaluation.backends import (
    SUPERGLOBAL_GEM_P,
    Backend,
    SuperGlobalModules,
    onnx_backend,
    torch_backend,
)
from workbench.evaluation.extraction import extract_all
from workbench.evaluation.revisitop import evaluate_features
from workbench.evaluation.search import SearchOptions

logger = logging.getLogger("evaluate")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-root",
        type=Path,
        required=True,
        help="folder holding <dataset>/gnd_<dataset>.pkl and <dataset>/jpg/",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="roxford5k or rparis6k (any folder in the revisitop layout works)",
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-dir", type=Path, help="exported artifact (model_meta.json)")
    model.add_argument("--checkpoint", type=Path, help="official DOLG or our torch checkpoint")
    p.add_argument("--trusted", action="store_true", help="allow pickled objects in checkpoint")
    p.add_argument("--device", default="auto", help="torch: auto, cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--providers",
        choices=("auto", "cuda", "tensorrt", "cpu"),
        default="auto",
        help="onnxruntime execution providers (--model-dir)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch / onnxruntime / faiss threads (0 = library default)",
    )
    p.add_argument("--workers", type=int, default=2, help="image decode + resize threads")
    p.add_argument("--distractors", type=Path, help="revisitop1m.txt (+1M distractors)")
    p.add_argument("--cache-dir", type=Path, help="reuse / store descriptors here")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--kappas", type=_ints, default=(1, 5, 10), help="k of mP@k (default 1,5,10)")

    prep = p.add_argument_group("extraction (defaults: the artifact's or checkpoint's)")
    prep.add_argument("--scales", type=_floats, help="comma list, e.g. 0.7071,1.0,1.4142")
    prep.add_argument("--max-side", type=int, help="long-side cap (never triggers on ROxf/RPar)")
    prep.add_argument(
        "--no-cap",
        action="store_true",
        help="no long-side cap at all, as the official code (images of any size)",
    )
    prep.add_argument(
        "--scale-pooling",
        choices=("mean", "max"),
        help="mean (DOLG) or max (SuperGlobal Scale-GeM)",
    )
    prep.add_argument(
        "--no-query-crop",
        action="store_true",
        help="use the full query image (NOT protocol-compliant; reproduces the "
        "official README's 'w/o crop' rows)",
    )

    sg = p.add_argument_group(
        "SuperGlobal descriptor modules, torch checkpoints only "
        "(tuned on CVNet, not DOLG; off by default)"
    )
    sg.add_argument(
        "--superglobal",
        action="store_true",
        help="GeM+ p=4.6, Regional-GeM, ReLU+ and --scale-pooling max",
    )
    sg.add_argument("--superglobal-gem-p", type=float, metavar="P", help="GeM+ fixed p")
    sg.add_argument("--superglobal-rgem", action="store_true", help="Regional-GeM on s4")
    sg.add_argument("--superglobal-relup", action="store_true", help="ReLU+ in s1-s3")

    search = p.add_argument_group("search and re-ranking")
    search.add_argument("--search", choices=("exact", "ivfpq"), default="exact")
    search.add_argument("--top-k", type=int, default=1000, help="ivfpq: ranking length")
    search.add_argument("--nprobe", type=int, default=None, help="ivfpq: lists probed")
    search.add_argument(
        "--candidate-factor",
        type=int,
        default=None,
        help="ivfpq: candidates re-scored exactly = top-k x this",
    )
    search.add_argument("--rerank", choices=("none", "superglobal"), default="none")
    search.add_argument("--superglobal-m", type=int, default=400)
    search.add_argument("--superglobal-k", type=int, default=9)
    search.add_argument("--superglobal-beta", type=float, default=0.15)
    args = p.parse_args(argv)
    if args.superglobal:
        args.superglobal_gem_p = args.superglobal_gem_p or SUPERGLOBAL_GEM_P
        args.superglobal_rgem = args.superglobal_relup = True
        args.scale_pooling = args.scale_pooling or "max"
    sg_modules = (
        args.superglobal_gem_p is not None or args.superglobal_rgem or args.superglobal_relup
    )
    if sg_modules and args.model_dir:
        p.error(
            "SuperGlobal descriptor modules are part of the exported graph: export with "
            "python -m workbench.export --superglobal-* and pass that --model-dir"
        )
    if args.superglobal_m < 1 or args.top_k < 1:
        p.error("--superglobal-m and --top-k must be >= 1")
    return args


def backend(args: argparse.Namespace) -> Backend:
    """The artifact (--model-dir) or the checkpoint (--checkpoint) of the flags."""
    fields = {"scales": args.scales, "max_side": args.max_side, "scale_pooling": args.scale_pooling}
    overrides = {k: v for k, v in fields.items() if v}
    if args.model_dir:
        return onnx_backend(args.model_dir, args.providers, args.threads, overrides)
    modules = SuperGlobalModules(
        args.superglobal_gem_p, args.superglobal_rgem, args.superglobal_relup
    )
    return torch_backend(
        args.checkpoint, args.trusted, args.device, args.threads, modules, overrides
    )


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, extract, search, score; prints the table and returns the JSON."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    dataset = RevisitopDataset(args.data_root, args.dataset, args.distractors)
    net = backend(args)
    model_name = net.info.get("name") or net.info.get("checkpoint")
    logger.info(
        "%s: %d db images, %d distractors, %d queries; model %s; scales %s",
        dataset.name,
        dataset.n_db,
        dataset.n_distractors,
        dataset.n_queries,
        model_name,
        list(net.prep.scales),
    )
    db, queries, extraction = extract_all(
        dataset,
        net,
        args.cache_dir,
        cap=not args.no_cap,
        query_crop=not args.no_query_crop,
        workers=args.workers,
    )
    extraction["backend"] = net.info["backend"]
    suffix = f" +{dataset.n_distractors} distractors" if dataset.n_distractors else ""
    title = (
        f"{dataset.name}{suffix}, {dataset.n_queries} queries; model {model_name} "
        f"({net.info['backend']})"
    )
    options = SearchOptions.from_mapping(vars(args))
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "n_db": dataset.n_db,
        "n_distractors": dataset.n_distractors,
        "n_queries": dataset.n_queries,
        "model": net.info,
        "extraction": extraction,
        **evaluate_features(db, queries, dataset.gnd, options, dataset.name, title),
    }
    print(result["table"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.out)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
