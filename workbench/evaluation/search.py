"""Rankings for the revisitop protocol: exact inner product over everything, or the service's
FAISS IVF-PQ store with exact re-scoring, then optionally SuperGlobal re-ranking of the top-M
with the service's implementation."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from app.config import FaissStoreSettings
from app.index.faiss_store import FaissStore
from app.search.rerank import superglobal_rerank_batch
from models.evaluation.ranking import exact_ranks, pad_ranks, rerank_head

logger = logging.getLogger("evaluate")

TRUNCATION_NOTE = (
    "rankings are truncated at top_k: positives beyond it count as not retrieved, so mAP and "
    "mP@k under-estimate the full-ranking values (docs/ALGORITHMS.md 5.3)"
)


@dataclass(frozen=True)
class SearchOptions:
    """How descriptors are searched and scored (the `search and re-ranking` flags)."""

    search: str = "exact"  # exact | ivfpq
    top_k: int = 1000  # ivfpq: ranking length
    nprobe: int | None = None  # ivfpq: lists probed (None: the store's default)
    candidate_factor: int | None = None  # ivfpq: candidates re-scored exactly = top_k x this
    threads: int = 0  # faiss threads (0 = library default)
    rerank: str = "none"  # none | superglobal
    superglobal_m: int = 400
    superglobal_k: int = 9
    superglobal_beta: float = 0.15
    kappas: tuple[int, ...] = (1, 5, 10)  # k of mP@k

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SearchOptions:
        """The options among `values` (e.g. `vars(args)`); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class Ranking:
    ranks: np.ndarray  # [N or top_k, Q] int64, MISSING-padded when truncated
    vectors: Callable[[int, int], np.ndarray]  # (query, m) -> its top-m vectors [m, D]
    available: int  # the smallest number of ranked items over queries
    info: dict[str, Any]


def search_exact(db: np.ndarray, queries: np.ndarray) -> Ranking:
    t0 = time.perf_counter()
    ranks = exact_ranks(db, queries)
    info = {
        "type": "exact",
        "ranking_length": int(ranks.shape[0]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Ranking(ranks, lambda q, m: db[ranks[:m, q]], int(ranks.shape[0]), info)


def search_ivfpq(
    db: np.ndarray, queries: np.ndarray, options: SearchOptions, with_vectors: bool
) -> Ranking:
    """Index everything in a temporary FaissStore (as the service would) and search it.

    The IVF-PQ index is trained once all vectors are in (ivf_min_vectors = N); below the
    store's own minimum (39 x 16 vectors) it stays exact, which the JSON reports.
    """
    n = db.shape[0]
    overrides: dict[str, Any] = {
        "ivf_min_vectors": n,
        "training_sample": max(1000, min(n, 200_000)),
        "snapshot_every": max(n, 1),
        "threads": max(options.threads, 0),
    }
    if options.nprobe is not None:
        overrides["nprobe"] = options.nprobe
    if options.candidate_factor is not None:
        overrides["candidate_factor"] = options.candidate_factor
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
                logger.warning(
                    "%d vectors are too few to train IVF-PQ; the store searched "
                    "exactly (index type %s)",
                    n,
                    stats.index_type,
                )
            t1 = time.perf_counter()
            k = min(options.top_k, n)
            hits = store.search(
                queries,
                k,
                nprobe=options.nprobe,
                candidate_factor=options.candidate_factor,
                with_vectors=with_vectors,
            )
            search_s = time.perf_counter() - t1
        finally:
            store.close()
    lists = [[int(h.id) for h in per_query] for per_query in hits]
    ranks = pad_ranks(lists, k)
    # [n_hits, D] fp16-rounded stored vectors per query (what the service re-ranks)
    vectors = [
        np.stack([np.asarray(h.vector, np.float32) for h in per_query])
        if with_vectors and per_query
        else np.zeros((0, db.shape[1]), np.float32)
        for per_query in hits
    ]
    info = {
        "type": "ivfpq",
        "index_type": stats.index_type,
        "index_params": stats.index_params,
        "top_k": k,
        "nprobe": options.nprobe if options.nprobe is not None else settings.nprobe,
        "candidate_factor": settings.candidate_factor,
        "min_candidates": settings.min_candidates,
        "ranking_length": k,
        "note": TRUNCATION_NOTE,
        "build_seconds": round(build_s, 3),
        "seconds": round(search_s, 3),
    }
    return Ranking(ranks, lambda q, m: vectors[q][:m], min(len(x) for x in lists), info)


def superglobal(
    ranking: Ranking, queries: np.ndarray, options: SearchOptions
) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-rank each query's top-M with SuperGlobal (the service's implementation)."""
    m = min(options.superglobal_m, ranking.available)
    t0 = time.perf_counter()
    if m < 2:
        logger.warning("SuperGlobal needs at least 2 candidates per query; skipped")
        return ranking.ranks, {"method": "superglobal", "skipped": True, "M": m}
    cands = np.stack([ranking.vectors(q, m) for q in range(queries.shape[0])])  # [Q,M,D]
    orders, _ = superglobal_rerank_batch(
        queries, cands, k=options.superglobal_k, beta=options.superglobal_beta
    )
    ranks = rerank_head(ranking.ranks, orders)
    seconds = time.perf_counter() - t0
    info = {
        "method": "superglobal",
        "M": m,
        "K": options.superglobal_k,
        "beta": options.superglobal_beta,
        "seconds": round(seconds, 3),
        "ms_per_query": round(1e3 * seconds / max(queries.shape[0], 1), 3),
    }
    if m < options.superglobal_m:
        info["note"] = f"M clamped from {options.superglobal_m} to the {m} available candidates"
    return ranks, info
