#!/usr/bin/env python
"""Revisited Oxford / Paris evaluation (mAP and mP@k, Easy / Medium / Hard) of a model.

    python scripts/evaluate.py --data-root ../data --dataset roxford5k \
        --model-dir index_data/model [--search exact|ivfpq] [--rerank superglobal] \
        [--distractors ../data/revisitop1m/revisitop1m.txt] [--cache-dir eval_cache] \
        [--out results.json]
    python scripts/evaluate.py --data-root ../data --dataset rparis6k --checkpoint r50_dolg_512.pyth

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
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from app.artifacts import Preprocessing, load_model_meta
from app.config import FaissStoreSettings, InferenceSettings
from app.index.faiss_store import FaissStore
from app.inference.preprocess import decode_image, pool_scales, prepare_image
from app.search.rerank import superglobal_rerank_batch
from models.evaluation.extract import (
    BBox,
    FeatureCache,
    clip_box,
    extract_features,
    list_digest,
)
from models.evaluation.metrics import SETUPS, evaluate_revisitop
from models.evaluation.ranking import exact_ranks, pad_ranks, rerank_head
from models.evaluation.revisitop import RevisitopDataset

logger = logging.getLogger("evaluate")

# Decoded-pixel limit for benchmark images (the service's default is 40 Mpx; +1M distractors
# and user datasets may hold larger photos, and this is a trusted, offline input).
MAX_PIXELS = 250_000_000
TRUNCATION_NOTE = (
    "rankings are truncated at top_k: positives beyond it count as not retrieved, so mAP and "
    "mP@k under-estimate the full-ranking values (docs/ALGORITHMS.md 5.3)"
)
RunFn = Callable[[np.ndarray], np.ndarray]
# models.layers.functional.SUPERGLOBAL_GEM_P, repeated so that ONNX evaluation needs no torch.
SUPERGLOBAL_GEM_P = 4.6


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", type=Path, required=True,
                   help="folder holding <dataset>/gnd_<dataset>.pkl and <dataset>/jpg/")
    p.add_argument("--dataset", required=True,
                   help="roxford5k or rparis6k (any folder in the revisitop layout works)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-dir", type=Path, help="exported artifact (model_meta.json)")
    model.add_argument("--checkpoint", type=Path, help="official DOLG or our torch checkpoint")
    p.add_argument("--trusted", action="store_true", help="allow pickled objects in checkpoint")
    p.add_argument("--device", default="auto", help="torch: auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--providers", choices=("auto", "cuda", "tensorrt", "cpu"), default="auto",
                   help="onnxruntime execution providers (--model-dir)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch / onnxruntime / faiss threads (0 = library default)")
    p.add_argument("--workers", type=int, default=2, help="image decode + resize threads")
    p.add_argument("--distractors", type=Path, help="revisitop1m.txt (+1M distractors)")
    p.add_argument("--cache-dir", type=Path, help="reuse / store descriptors here")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--kappas", type=_ints, default=(1, 5, 10), help="k of mP@k (default 1,5,10)")

    prep = p.add_argument_group("extraction (defaults: the artifact's or checkpoint's)")
    prep.add_argument("--scales", type=_floats, help="comma list, e.g. 0.7071,1.0,1.4142")
    prep.add_argument("--max-side", type=int, help="long-side cap (never triggers on ROxf/RPar)")
    prep.add_argument("--no-cap", action="store_true",
                      help="no long-side cap at all, as the official code (images of any size)")
    prep.add_argument("--scale-pooling", choices=("mean", "max"),
                      help="mean (DOLG) or max (SuperGlobal Scale-GeM)")
    prep.add_argument("--no-query-crop", action="store_true",
                      help="use the full query image (NOT protocol-compliant; reproduces the "
                           "official README's 'w/o crop' rows)")

    sg = p.add_argument_group("SuperGlobal descriptor modules, torch checkpoints only "
                              "(tuned on CVNet, not DOLG; off by default)")
    sg.add_argument("--superglobal", action="store_true",
                    help="GeM+ p=4.6, Regional-GeM, ReLU+ and --scale-pooling max")
    sg.add_argument("--superglobal-gem-p", type=float, metavar="P", help="GeM+ fixed p")
    sg.add_argument("--superglobal-rgem", action="store_true", help="Regional-GeM on s4")
    sg.add_argument("--superglobal-relup", action="store_true", help="ReLU+ in s1-s3")

    search = p.add_argument_group("search and re-ranking")
    search.add_argument("--search", choices=("exact", "ivfpq"), default="exact")
    search.add_argument("--top-k", type=int, default=1000, help="ivfpq: ranking length")
    search.add_argument("--nprobe", type=int, default=None, help="ivfpq: lists probed")
    search.add_argument("--candidate-factor", type=int, default=None,
                        help="ivfpq: candidates re-scored exactly = top-k x this")
    search.add_argument("--rerank", choices=("none", "superglobal"), default="none")
    search.add_argument("--superglobal-m", type=int, default=400)
    search.add_argument("--superglobal-k", type=int, default=9)
    search.add_argument("--superglobal-beta", type=float, default=0.15)
    args = p.parse_args(argv)
    if args.superglobal:
        args.superglobal_gem_p = args.superglobal_gem_p or SUPERGLOBAL_GEM_P
        args.superglobal_rgem = args.superglobal_relup = True
        args.scale_pooling = args.scale_pooling or "max"
    sg_modules = args.superglobal_gem_p is not None or args.superglobal_rgem or \
        args.superglobal_relup
    if sg_modules and args.model_dir:
        p.error("SuperGlobal descriptor modules are part of the exported graph: export with "
                "scripts/export.py --superglobal-* and pass that --model-dir")
    if args.superglobal_m < 1 or args.top_k < 1:
        p.error("--superglobal-m and --top-k must be >= 1")
    return args


# --------------------------------------------------------------------------------- back-ends


@dataclass
class Backend:
    """The network behind one evaluation: a per-scale runner and the preprocessing to use."""

    run: RunFn  # [B,3,H,W] float32 -> [B,D] float32 unit rows
    prep: Preprocessing
    dim: int
    identity: dict[str, Any]  # what determines the descriptors (feature-cache key)
    info: dict[str, Any] = field(default_factory=dict)  # what the JSON reports


def _prep_overrides(args: argparse.Namespace) -> dict[str, Any]:
    fields = {"scales": args.scales, "max_side": args.max_side,
              "scale_pooling": args.scale_pooling}
    return {k: v for k, v in fields.items() if v}


def onnx_backend(args: argparse.Namespace) -> Backend:
    from app.inference.session import OnnxSession

    meta = load_model_meta(args.model_dir)  # checks the graph's sha256 against the meta
    settings = InferenceSettings(providers=args.providers, intra_op_threads=max(args.threads, 0))
    session = OnnxSession(args.model_dir / meta.onnx_file, meta, settings)
    prep = meta.preprocessing.model_copy(update=_prep_overrides(args))
    identity = {"backend": "onnx", "onnx_sha256": meta.onnx_sha256}
    info = {"backend": "onnx", "name": meta.name, "version": meta.version,
            "architecture": meta.architecture, "depth": meta.depth,
            "precision": meta.precision, "onnx_sha256": meta.onnx_sha256,
            "source": meta.source.model_dump(mode="json"),
            "providers": list(session.active_providers), "device": session.device}
    return Backend(session.run, prep, meta.embedding_dim, identity, info)


def torch_backend(args: argparse.Namespace) -> Backend:
    import torch

    from models.checkpoint import build_model_from_checkpoint
    from models.evaluation.extract import TorchRunner
    from models.superglobal import SuperGlobalOptions, apply_superglobal_

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ckpt = build_model_from_checkpoint(args.checkpoint, trusted=args.trusted)
    options = SuperGlobalOptions(gem_p=args.superglobal_gem_p, rgem=args.superglobal_rgem,
                                 relup=args.superglobal_relup)
    apply_superglobal_(model, options)
    prep = Preprocessing(**{**(ckpt.preprocessing or {}), **_prep_overrides(args)})
    identity = {"backend": "torch", "checkpoint_sha256": ckpt.sha256,
                "superglobal": options.to_dict()}
    info = {"backend": "torch", "checkpoint": ckpt.file_name, "kind": ckpt.kind,
            "checkpoint_sha256": ckpt.sha256, "epoch": ckpt.epoch,
            "config": ckpt.config.to_dict(), "superglobal": options.describe(),
            "device": str(device), "torch": torch.__version__}
    return Backend(TorchRunner(model, device), prep, ckpt.config.reduction_dim, identity, info)


# --------------------------------------------------------------------------------- extraction


def make_prepare(
    prep: Preprocessing, cap: bool = True
) -> Callable[[Path, BBox | None], list[np.ndarray]]:
    """Image file (+ query box) -> per-scale network inputs, with the service's functions.

    The chain of `Embedder.prepare_image`: decode (RGB, EXIF-oriented) -> long-side cap ->
    crop the box (given in original pixels, scaled by the cap factor, int() truncation) ->
    multi-scale inputs. Without a cap (ROxf/RPar never trigger it, or --no-cap) the crop is
    exactly the official `im[int(y1):int(y2), int(x1):int(x2)]` of the original image.
    """

    def prepare(path: Path, bbox: BBox | None) -> list[np.ndarray]:
        img = decode_image(path.read_bytes(), MAX_PIXELS)  # [H,W,3] uint8 RGB
        height, width = img.shape[:2]
        box = None if bbox is None else clip_box(bbox, width, height)
        return prepare_image(img, prep, box, cap=cap)  # S x [3,h_s,w_s]

    return prepare


def make_embed(run: RunFn, prep: Preprocessing) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Per-scale inputs -> [D] unit descriptor: one run per scale (sizes differ), then the
    service's pooling (per-scale L2, mean or max, L2)."""

    def embed(inputs: list[np.ndarray]) -> np.ndarray:
        vectors = np.concatenate([run(x[None]) for x in inputs])  # [S,D]
        return pool_scales(vectors, prep)

    return embed


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_all(
    args: argparse.Namespace, dataset: RevisitopDataset, backend: Backend
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(db [N(+distractors), D], queries [Q, D], extraction info), through the cache."""
    cache = FeatureCache(args.cache_dir)
    cap = not args.no_cap
    prepare = make_prepare(backend.prep, cap=cap)
    embed = make_embed(backend.run, backend.prep)
    common = {"model": backend.identity, "preprocessing": backend.prep.model_dump(mode="json"),
              "long_side_cap": cap}
    crop = "none" if args.no_query_crop else "int-truncation"
    parts: dict[str, tuple[dict[str, Any], list[Path], list[BBox | None] | None]] = {
        "db": ({**common, "dataset": dataset.name, "part": "db",
                "images": {"count": dataset.n_db, "sha256": list_digest(dataset.imlist)}},
               dataset.db_paths()[: dataset.n_db], None),
        "queries": ({**common, "dataset": dataset.name, "part": "queries", "query_crop": crop,
                     "images": {"count": dataset.n_queries,
                                "sha256": list_digest(dataset.qimlist)},
                     "gnd_sha256": _file_sha256(dataset.gnd_path)},
                    dataset.query_paths(),
                    None if args.no_query_crop else list(dataset.query_bboxes())),
    }
    if dataset.n_distractors:
        # Keyed without the dataset: ROxf and RPar share the same +1M descriptors.
        parts["distractors"] = (
            {**common, "part": "distractors",
             "images": {"count": dataset.n_distractors,
                        "sha256": list_digest(dataset.distractor_list)}},
            dataset.db_paths()[dataset.n_db :], None)
    features: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"cached": {}, "seconds": {}, "cache_keys": {}}
    for part, (description, paths, boxes) in parts.items():
        name = f"{dataset.name}-{part}" if part != "distractors" else "revisitop1m"
        t0 = time.perf_counter()

        def compute(paths: list[Path] = paths, boxes: list[BBox | None] | None = boxes,
                    part: str = part) -> np.ndarray:
            return extract_features(paths, prepare, embed, boxes, workers=args.workers,
                                    what=part)

        features[part], cached = cache.get_or_compute(name, description, len(paths), compute)
        info["cached"][part] = cached
        info["seconds"][part] = round(time.perf_counter() - t0, 2)
        info["cache_keys"][part] = FeatureCache.key(description)
    db = features["db"]
    if "distractors" in features:
        db = np.concatenate([db, features["distractors"]])
    info.update({"preprocessing": backend.prep.model_dump(mode="json"), "long_side_cap": cap,
                 "query_crop": crop, "dim": int(db.shape[1])})
    return db, features["queries"], info


# --------------------------------------------------------------------------------- search


@dataclass
class Ranking:
    ranks: np.ndarray  # [N or top_k, Q] int64, MISSING-padded when truncated
    vectors: Callable[[int, int], np.ndarray]  # (query, m) -> its top-m vectors [m, D]
    available: int  # the smallest number of ranked items over queries
    info: dict[str, Any]


def search_exact(db: np.ndarray, queries: np.ndarray) -> Ranking:
    t0 = time.perf_counter()
    ranks = exact_ranks(db, queries)
    info = {"type": "exact", "ranking_length": int(ranks.shape[0]),
            "seconds": round(time.perf_counter() - t0, 3)}
    return Ranking(ranks, lambda q, m: db[ranks[:m, q]], int(ranks.shape[0]), info)


def search_ivfpq(
    db: np.ndarray, queries: np.ndarray, args: argparse.Namespace, with_vectors: bool
) -> Ranking:
    """Index everything in a temporary FaissStore (as the service would) and search it.

    The IVF-PQ index is trained once all vectors are in (ivf_min_vectors = N); below the
    store's own minimum (39 x 16 vectors) it stays exact, which the JSON reports.
    """
    n = db.shape[0]
    overrides: dict[str, Any] = {"ivf_min_vectors": n, "training_sample": max(1000, min(n,
                                 200_000)), "snapshot_every": max(n, 1),
                                 "threads": max(args.threads, 0)}
    if args.nprobe is not None:
        overrides["nprobe"] = args.nprobe
    if args.candidate_factor is not None:
        overrides["candidate_factor"] = args.candidate_factor
    settings = FaissStoreSettings(**overrides)
    with tempfile.TemporaryDirectory(prefix="eval-store-") as tmp:
        store = FaissStore.open(Path(tmp), db.shape[1], settings)
        try:
            t0 = time.perf_counter()
            for start in range(0, n, 50_000):
                chunk = db[start : start + 50_000]
                store.add([str(i) for i in range(start, start + len(chunk))], chunk)
            store.wait_for_training()
            build_s = time.perf_counter() - t0
            stats = store.stats()
            if stats.index_type != "ivfpq":
                logger.warning("%d vectors are too few to train IVF-PQ; the store searched "
                               "exactly (index type %s)", n, stats.index_type)
            t1 = time.perf_counter()
            k = min(args.top_k, n)
            hits = store.search(queries, k, nprobe=args.nprobe,
                                candidate_factor=args.candidate_factor,
                                with_vectors=with_vectors)
            search_s = time.perf_counter() - t1
        finally:
            store.close()
    lists = [[int(h.id) for h in per_query] for per_query in hits]
    ranks = pad_ranks(lists, k)
    # [n_hits, D] fp16-rounded stored vectors per query (what the service re-ranks)
    vectors = [np.stack([np.asarray(h.vector, np.float32) for h in per_query])
               if with_vectors and per_query else np.zeros((0, db.shape[1]), np.float32)
               for per_query in hits]
    info = {"type": "ivfpq", "index_type": stats.index_type, "index_params": stats.index_params,
            "top_k": k, "nprobe": args.nprobe if args.nprobe is not None else settings.nprobe,
            "candidate_factor": settings.candidate_factor,
            "min_candidates": settings.min_candidates, "ranking_length": k,
            "note": TRUNCATION_NOTE, "build_seconds": round(build_s, 3),
            "seconds": round(search_s, 3)}
    return Ranking(ranks, lambda q, m: vectors[q][:m], min(len(x) for x in lists), info)


def superglobal(ranking: Ranking, queries: np.ndarray, args: argparse.Namespace
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-rank each query's top-M with SuperGlobal (the service's implementation)."""
    m = min(args.superglobal_m, ranking.available)
    t0 = time.perf_counter()
    if m < 2:
        logger.warning("SuperGlobal needs at least 2 candidates per query; skipped")
        return ranking.ranks, {"method": "superglobal", "skipped": True, "M": m}
    cands = np.stack([ranking.vectors(q, m) for q in range(queries.shape[0])])  # [Q,M,D]
    orders, _ = superglobal_rerank_batch(queries, cands, k=args.superglobal_k,
                                         beta=args.superglobal_beta)
    ranks = rerank_head(ranking.ranks, orders)
    seconds = time.perf_counter() - t0
    info = {"method": "superglobal", "M": m, "K": args.superglobal_k,
            "beta": args.superglobal_beta, "seconds": round(seconds, 3),
            "ms_per_query": round(1e3 * seconds / max(queries.shape[0], 1), 3)}
    if m < args.superglobal_m:
        info["note"] = f"M clamped from {args.superglobal_m} to the {m} available candidates"
    return ranks, info


# --------------------------------------------------------------------------------- report


def format_table(name: str, results: dict[str, Any], title: str) -> str:
    """The E/M/H table: mAP and mP@k x100, and revisitop's own two summary lines."""
    kappas = results["kappas"]

    def cell(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.2f}"

    header = f"  {'':8s}{'mAP':>7s}" + "".join(f"{'mP@' + str(k):>8s}" for k in kappas)
    lines = [title, header]
    for setup in SETUPS:
        row = f"  {setup.capitalize():8s} {cell(results['mAP'][setup])}"
        row += "".join(f"  {cell(results['mP@k'][setup][str(k)])}" for k in kappas)
        lines.append(row)
    maps = ", ".join(f"{s[0].upper()}: {cell(results['mAP'][s]).strip()}" for s in SETUPS)
    prs = ", ".join(
        f"{s[0].upper()}: {[results['mP@k'][s][str(k)] for k in kappas]}" for s in SETUPS)
    lines.append(f">> {name}: mAP {maps}")
    lines.append(f">> {name}: mP@k{kappas} {prs}")
    return "\n".join(lines)


def evaluate_features(
    db: np.ndarray,
    queries: np.ndarray,
    gnd: list[dict[str, Any]],
    args: argparse.Namespace,
    name: str,
    title: str = "",
) -> dict[str, Any]:
    """Search (+ re-rank) and score descriptors: db [N, D] (database, then any distractors),
    queries [Q, D], gnd the raw per-query dicts. Returns the JSON-ready result part."""
    rerank = args.rerank == "superglobal"
    ranking = (search_exact(db, queries) if args.search == "exact"
               else search_ivfpq(db, queries, args, with_vectors=rerank))
    results_global = evaluate_revisitop(ranking.ranks, gnd, args.kappas)
    title = f"{title}; {ranking.info['type']} search" if title else f"{ranking.info['type']} search"
    tables = [format_table(name, results_global, title + "; global ranking")]
    result: dict[str, Any] = {"search": ranking.info, "rerank": {"method": "none"},
                              "results": results_global}
    if rerank:
        ranks, rerank_info = superglobal(ranking, queries, args)
        result["rerank"] = rerank_info
        result["results_global"] = results_global
        result["results"] = evaluate_revisitop(ranks, gnd, args.kappas)
        tables.append(format_table(
            name, result["results"],
            title + f"; SuperGlobal re-ranking (M={rerank_info['M']}, "
                    f"K={args.superglobal_k}, beta={args.superglobal_beta:g})"))
    if ranking.info["type"] == "ivfpq":
        tables.append(f"note: {TRUNCATION_NOTE}")
    result["table"] = "\n\n".join(tables)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    dataset = RevisitopDataset(args.data_root, args.dataset, args.distractors)
    backend = onnx_backend(args) if args.model_dir else torch_backend(args)
    model_name = backend.info.get("name") or backend.info.get("checkpoint")
    logger.info("%s: %d db images, %d distractors, %d queries; model %s; scales %s",
                dataset.name, dataset.n_db, dataset.n_distractors, dataset.n_queries,
                model_name, list(backend.prep.scales))
    db, queries, extraction = extract_all(args, dataset, backend)
    extraction["backend"] = backend.info["backend"]
    suffix = f" +{dataset.n_distractors} distractors" if dataset.n_distractors else ""
    title = (f"{dataset.name}{suffix}, {dataset.n_queries} queries; model {model_name} "
             f"({backend.info['backend']})")
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "n_db": dataset.n_db,
        "n_distractors": dataset.n_distractors,
        "n_queries": dataset.n_queries,
        "model": backend.info,
        "extraction": extraction,
        **evaluate_features(db, queries, dataset.gnd, args, dataset.name, title),
    }
    print(result["table"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.out)
    return result


if __name__ == "__main__":
    from scripts.cli_errors import run_cli

    raise SystemExit(run_cli(main))
