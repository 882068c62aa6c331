"""The capacity model against its closed forms, and the fit against known coefficients."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.bench.capacity.model import (
    faiss_node,
    fit,
    index_bytes,
    ingest,
    nlist_for,
    pq_m,
    predict,
    query_terms,
)

TRUE = np.array([2e-9, 5e-9, 6e-9])  # s per (dim x centroid), per code byte, per (dim x cand.)
# (n, d, nprobe, fetch): different enough that the three terms are independent.
RUNS = [(3000, 64, 8, 100), (20_000, 64, 16, 400), (50_000, 128, 32, 50), (10_000, 128, 4, 1000)]


def _observed(n: int, d: int, nprobe: int, fetch: int, coef: np.ndarray = TRUE) -> dict:
    """A run measured exactly as the model says (index file as the closed form)."""
    nlist = nlist_for(n, d)
    return {
        "n": n,
        "d": d,
        "m": pq_m(d),
        "nlist": nlist,
        "nbits": 8,
        "nprobe": nprobe,
        "fetch": fetch,
        "core_s_per_query": float(query_terms(n, d, nprobe, fetch) @ coef),
        "index_file_bytes_per_vector": index_bytes(n, d) / n,
    }


def test_index_bytes_is_codes_and_ids_plus_centroids_and_codebooks() -> None:
    # 1000 x (2-byte code + 8-byte id) + (10 centroids + 256 codewords) x 4 dims x 4 bytes
    assert index_bytes(1000, 4, m=2, nlist=10) == 1000 * 10 + (10 * 4 + 256 * 4) * 4
    # 4-bit codes: m=3 sub-quantizers pack into 2 bytes; 16 codewords
    assert index_bytes(100, 6, m=3, nlist=2, nbits=4) == 100 * (2 + 8) + (2 * 6 + 16 * 6) * 4
    # defaults are the store's own choice: PQ d/8, 8 bits
    n, d = 1_000_000, 512
    assert pq_m(d) == 64 and nlist_for(n, d) == 4096
    assert index_bytes(n, d) == n * (64 + 8) + (4096 * 512 + 256 * 512) * 4


def test_the_training_sample_caps_nlist_at_a_39th_of_it() -> None:
    assert nlist_for(10**9, 512) == 4096  # 200k sample: 4 sqrt(1e9) -> 131072, halved to 4096
    assert nlist_for(10**9, 512, training_sample=10**7) == 131_072
    assert nlist_for(10**9, 512, training_sample=39 * 1024) == 1024


def test_query_terms_are_centroid_scan_and_rescore_work() -> None:
    n, d = 1_000_000, 512
    terms = query_terms(n, d, nprobe=32, fetch=400)
    np.testing.assert_allclose(terms, [4096 * 512, 32 * (n / 4096) * 64, 400 * 512])


def test_fit_recovers_the_coefficients_of_exact_runs() -> None:
    obs = [_observed(*r) for r in RUNS]
    np.testing.assert_allclose(fit(obs), TRUE, rtol=1e-6)
    for row in (predict(o, TRUE) for o in obs):
        assert row["qps_per_core"]["ratio"] == 1.0
        assert row["qps_per_core"]["predicted"] == row["qps_per_core"]["measured"]
        assert row["index_bytes_per_vector"]["ratio"] == 1.0


def test_a_fixed_scan_rate_is_kept_and_the_other_terms_fitted_around_it() -> None:
    obs = [_observed(*r) for r in RUNS]
    coef = fit(obs, scan_s_per_byte=TRUE[1])
    np.testing.assert_allclose(coef, TRUE, rtol=1e-6)
    assert coef[1] == TRUE[1]


def test_fit_keeps_coefficients_non_negative() -> None:
    """Runs timed by the centroid term alone: the other two come out 0, not negative."""
    only_coarse = np.array([3e-9, 0.0, 0.0])
    obs = [_observed(*r, coef=only_coarse) for r in RUNS]
    coef = fit(obs)
    assert coef[0] == pytest.approx(3e-9) and coef[1] == 0.0 and coef[2] == 0.0


def test_a_node_s_bytes_and_qps() -> None:
    n, d = 100_000_000, 512
    node = faiss_node(
        n, d, TRUE, 80.0, nprobe=32, fetch=400, rescore_bytes=2 * d, thumb_bytes=12_000
    )
    idx = index_bytes(n, d)
    assert node["nlist"] == 4096 and node["bytes_per_vector_ram"] == round(idx / n, 1)
    assert node["ram_index_gib"] == round(idx / 2**30, 2)
    assert node["disk_gib"] == round((idx + n * (1024 + 80.0 + 12_000)) / 2**30, 1)
    assert node["rescore_rows_gib"] == round(n * 1024 / 2**30, 1)
    assert node["qps_per_core"] == round(1 / float(query_terms(n, d, 32, 400) @ TRUE), 1)
    zero = faiss_node(n, d, np.zeros(3), 80.0, 32, 400, 2 * d, 12_000)
    assert zero["qps_per_core"] is None


def test_ingest_core_days() -> None:
    out = ingest(0.1, [1_000_000, 10**9])
    assert out == {
        "images_per_s_per_core": 10.0,
        "core_days": {"1000000": 1.2, "1000000000": 1157.4},
    }
