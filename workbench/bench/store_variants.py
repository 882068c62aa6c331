"""Cheaper vectors at scale: index variants compared on a store built by workbench/bench/store.py.

Each variant is raw FAISS over the store's own fp16 rows (`vectors.f16`), trained as the store
trains (spherical IVF k-means on a sample of at most 200k rows, nlist from
`choose_ivf_params`), searched with the store's nprobe and candidate count, and re-scored from
rows kept at some precision. What changes per variant:

    base         IVF{nlist},PQ{d/8}x8np on the full vectors; fp16 re-scoring (the store today)
    pq64         IVF{nlist},PQ64x8np on the full vectors (64 B codes, as pca512 / opq512)
    pcaD         PCA to D dims (learned from the store's sample), IVF + PQ{D/8}; fp16 re-scoring
    opqD         OPQ{D/8}_{D}: rotation + projection to D dims learned for PQ, IVF + PQ{D/8}
    sq8rescore   base index; candidates re-scored from 8-bit rows (faiss ScalarQuantizer
                 QT_8bit: per-dimension min/max, D bytes per vector instead of 2 D)

Per variant: recall@10 of the re-scored top-10 and of the ANN order alone against the exact
fp16 top-10, the index's serialized bytes per vector, re-scoring bytes per vector, train and
add time, single-query p50/p99 and batched QPS (the re-scoring in numpy, as the store does).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import log, summarize_s

K = 10


def factory_for(variant: str, d: int, nlist: int) -> str:
    """FAISS index_factory string of a variant (see the module doc)."""
    if variant in ("base", "sq8rescore"):
        return f"IVF{nlist},PQ{d // 8}x8np"
    if variant == "pq64":
        return f"IVF{nlist},PQ64x8np"
    if variant.startswith("pca"):
        out = int(variant[3:])
        return f"PCA{out},IVF{nlist},PQ{out // 8}x8np"
    if variant.startswith("opq"):
        out = int(variant[3:])
        return f"OPQ{out // 8}_{out},IVF{nlist},PQ{out // 8}x8np"
    raise ValueError(f"unknown variant {variant!r}")


# OPQ's rotation is trained on at most this many rows (FAISS's default 65,536 took 273 s for
# 15k rows at 1280-d here; the PQ after it still trains on the full sample).
OPQ_TRAIN_ROWS = 16_384


def train_variant(factory: str, d: int, train_x: np.ndarray, nprobe: int) -> Any:
    import faiss

    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("OPQ"):
        pre = faiss.downcast_index(index)
        assert isinstance(pre, faiss.IndexPreTransform), type(pre)
        # faiss's stub types `chain` as a list; it is a SWIG VectorTransformVector (at(i)).
        first = pre.chain.at(0)  # type: ignore[attr-defined]
        opq = faiss.downcast_VectorTransform(first)
        assert isinstance(opq, faiss.OPQMatrix), type(opq)
        opq.max_train_points = OPQ_TRAIN_ROWS
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.spherical = True  # as app/index/ivf.py trains the store's index
    ivf.nprobe = nprobe
    index.train(train_x)
    return index


def sq8_rows(x16: np.ndarray, train_x: np.ndarray, chunk: int = 65_536) -> tuple[Any, np.ndarray]:
    """(trained ScalarQuantizer, uint8 codes [n, D]) of the fp16 rows."""
    import faiss

    d = x16.shape[1]
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(train_x)
    codes = np.empty((x16.shape[0], sq.code_size), dtype=np.uint8)
    for start in range(0, x16.shape[0], chunk):
        block = np.ascontiguousarray(x16[start : start + chunk], dtype=np.float32)
        codes[start : start + block.shape[0]] = sq.compute_codes(block)
    return sq, codes


def search_rescored(
    index: Any,
    queries: np.ndarray,
    fetch: int,
    nprobe: int,
    rows_of: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """ANN top-`fetch` then exact re-scoring from `rows_of(rows [m]) -> [m, D] float32`.
    Returns (ann_rows [Q, fetch], rescored top-K rows [Q, K])."""
    import faiss

    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    _, rows = index.search(queries, fetch, params=params)  # [Q, fetch]
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    scores = np.empty(rows.shape, dtype=np.float32)
    for i in range(queries.shape[0]):
        scores[i] = rows_of(safe[i]) @ queries[i]
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return rows, np.take_along_axis(rows, order, 1)


def compare_variants(
    workdir: Path, n: int, dim: int, variants: list[str], cores: int
) -> dict[str, Any]:
    """Variants over the first `n` rows of the store in `workdir` (the rows the ground truth
    covers; the measure phase appends more)."""
    import faiss

    from app.config import FaissStoreSettings
    from app.index.faiss_store import VECTORS_FILE, choose_ivf_params
    from workbench.bench.synthetic import recall_at_k

    faiss.omp_set_num_threads(cores)
    settings = FaissStoreSettings()
    queries = np.load(workdir / "queries.npy")
    truth = np.load(workdir / "truth.npy")
    x16 = np.memmap(workdir / "store" / VECTORS_FILE, dtype="<f2", mode="r").reshape(-1, dim)
    x16 = x16[:n]
    n_train = min(n, settings.training_sample)
    nlist = choose_ivf_params(n, dim, n_train=n_train)["nlist"]
    nprobe = settings.nprobe
    fetch = max(K * settings.candidate_factor, settings.min_candidates)
    rng = np.random.default_rng(n)
    sample = np.sort(rng.choice(n, size=n_train, replace=False))
    train_x = np.asarray(x16[sample], dtype=np.float32)  # [n_train, D]

    def fp16_rows(rows: np.ndarray) -> np.ndarray:
        return np.asarray(x16[rows], dtype=np.float32)

    out: dict[str, Any] = {
        "n": n,
        "dim": dim,
        "nlist": nlist,
        "nprobe": nprobe,
        "candidates": fetch,
        "trained_on": n_train,
        "variants": {},
    }
    sq8: tuple[Any, np.ndarray] | None = None
    trained: dict[str, Any] = {}
    for variant in [v.strip() for v in variants if v.strip()]:
        factory = factory_for(variant, dim, nlist)
        log(f"variants n={n}: {variant} ({factory}) ...")
        entry: dict[str, Any] = {"factory": factory}
        if factory in trained:
            index, entry["train_s"], entry["add_s"] = trained[factory]
        else:
            t0 = time.perf_counter()
            index = train_variant(factory, dim, train_x, nprobe)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for start in range(0, n, 16_384):
                index.add(np.asarray(x16[start : start + 16_384], dtype=np.float32))
            add_s = time.perf_counter() - t0
            trained[factory] = (index, round(train_s, 2), round(add_s, 2))
            entry["train_s"], entry["add_s"] = round(train_s, 2), round(add_s, 2)
        entry["index_bytes_per_vector"] = round(faiss.serialize_index(index).size / n, 1)
        rows_of = fp16_rows
        entry["rescore_rows"] = "fp16"
        entry["rescore_bytes_per_vector"] = 2 * dim
        if variant == "sq8rescore":
            if sq8 is None:
                t0 = time.perf_counter()
                sq8 = sq8_rows(x16, train_x)
                entry["sq8_encode_s"] = round(time.perf_counter() - t0, 2)
            sq, codes = sq8

            def sq8_decode(rows: np.ndarray, sq: Any = sq, codes: np.ndarray = codes) -> Any:
                return sq.decode(np.ascontiguousarray(codes[rows]))

            rows_of = sq8_decode
            entry["rescore_rows"] = "int8 (SQ8, per-dimension range)"
            entry["rescore_bytes_per_vector"] = dim
        t0 = time.perf_counter()
        ann, found = search_rescored(index, queries, fetch, nprobe, rows_of)
        batch_s = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        lat = []
        for q in queries[:300]:
            t = time.perf_counter()
            search_rescored(index, q[None, :], fetch, nprobe, rows_of)
            lat.append(time.perf_counter() - t)
        faiss.omp_set_num_threads(cores)
        entry["recall_at_10"] = recall_at_k(found, truth)
        entry["recall_at_10_ann_only"] = recall_at_k(ann[:, :K], truth)
        entry["candidate_recall"] = round(
            float(
                np.mean(
                    [
                        len(set(a.tolist()) & set(t.tolist())) / K
                        for a, t in zip(ann, truth, strict=True)
                    ]
                )
            ),
            4,
        )
        entry["batch_qps"] = round(queries.shape[0] / batch_s, 1)
        entry["single"] = summarize_s(lat)
        entry["ram_bytes_per_vector"] = entry["index_bytes_per_vector"]
        entry["disk_bytes_per_vector"] = round(
            entry["index_bytes_per_vector"] + entry["rescore_bytes_per_vector"], 1
        )
        out["variants"][variant] = entry
        log(f"variants n={n}: {variant}: recall@10 {entry['recall_at_10']}")
    return out
