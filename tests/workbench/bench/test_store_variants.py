"""workbench/bench/store.py at another dimension with the bulk load, and its index variants
(workbench/bench/store_variants.py) on a tiny store."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.bench.store import build
from workbench.bench.store_variants import compare_variants, factory_for, sq8_rows
from workbench.bench.synthetic import clustered_unit_vectors, recall_at_k


def test_factory_strings() -> None:
    assert factory_for("base", 1280, 4096) == "IVF4096,PQ160x8np"
    assert factory_for("pq64", 1280, 1024) == "IVF1024,PQ64x8np"
    assert factory_for("pca256", 1280, 1024) == "PCA256,IVF1024,PQ32x8np"
    assert factory_for("opq512", 1280, 1024) == "OPQ64_512,IVF1024,PQ64x8np"
    with pytest.raises(ValueError):
        factory_for("hnsw", 1280, 1024)


def test_sq8_rows_decode_within_one_step_of_the_range() -> None:
    x16 = clustered_unit_vectors(2000, 64, seed=1)
    train = x16.astype(np.float32)
    sq, codes = sq8_rows(x16, train)
    assert codes.shape == (2000, 64) and codes.dtype == np.uint8
    decoded = sq.decode(codes)
    step = (train.max(axis=0) - train.min(axis=0)) / 255.0  # [D]
    assert np.all(np.abs(decoded - train) <= step[None, :] * 0.51 + 1e-6)


def test_variants_on_a_bulk_loaded_store(tmp_path) -> None:
    out = build(3000, tmp_path, batch=1000, seed=0, nq=50, dim=64, load="bulk")
    assert out["index_type"] == "ivfpq" and out["load"] == "bulk"
    res = compare_variants(tmp_path, 3000, 64, ["base", "pca32", "sq8rescore"], cores=1)
    v = res["variants"]
    # Exact fp16 re-scoring of 80 candidates: near the exact top-10 on clustered data.
    assert v["base"]["recall_at_10"] >= 0.9
    assert v["base"]["recall_at_10"] >= v["base"]["recall_at_10_ann_only"]
    # The same candidates re-scored from 8-bit rows: never more candidates than base found.
    assert v["sq8rescore"]["candidate_recall"] == v["base"]["candidate_recall"]
    assert v["sq8rescore"]["rescore_bytes_per_vector"] == 64
    assert v["pca32"]["factory"].startswith("PCA32,")
    truth = np.load(tmp_path / "truth.npy")
    assert recall_at_k(truth, truth) == 1.0
