"""SuperGlobal re-ranking: loop reference of docs/ALGORITHMS.md 3.4, closed forms, properties."""

from __future__ import annotations

import numpy as np
import pytest

from app.search.rerank import _top_neighbours, superglobal_rerank, superglobal_rerank_batch


def l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def reference_rerank(query, cands, k=9, beta=0.15):
    """Plain-loop transcription of the official MDescAug + RerankwMDA for one query.

    Mirrors the spec pseudo-code with the official details: K + 1 neighbours (clamped to M as
    torch slicing does), weight 1 for the first (most similar) neighbour and beta * sim for the
    others, refined vectors not re-normalised, expansion = max over the K + 1 best refined.
    Sorts are stable (ties to the lower index), the documented tie rule.
    """
    q = np.asarray(query, dtype=np.float32)
    G = np.asarray(cands, dtype=np.float32)
    M, D = G.shape
    n = min(k + 1, M)
    R = np.zeros((M, D), dtype=np.float32)
    for i in range(M):
        sims = np.array([np.dot(G[i], G[j]) for j in range(M)], dtype=np.float32)
        nn = np.argsort(-sims, kind="stable")[:n]
        w = [np.float32(1.0)] + [np.float32(beta) * sims[j] for j in nn[1:]]
        acc = np.zeros(D, dtype=np.float32)
        for wk, j in zip(w, nn, strict=True):
            acc += wk * G[j]
        R[i] = acc / np.float32(sum(w))
    s1 = np.array([np.dot(q, R[i]) for i in range(M)], dtype=np.float32)
    ord1 = np.argsort(-s1, kind="stable")
    qe = R[ord1[0]].copy()
    for j in ord1[1:n]:
        qe = np.maximum(qe, R[j])
    s2 = np.array([np.dot(qe, R[ord1[j]]) for j in range(M)], dtype=np.float32)
    final = np.array([(s1[ord1[j]] + s2[j]) / 2 for j in range(M)], dtype=np.float32)
    ord2 = np.argsort(-final, kind="stable")
    return ord1[ord2], final[ord2]


def retrieval_case(rng, n_cands, dim, spread=0.5):
    """A query and its top-M candidates in initial (cosine) order, with some cluster structure."""
    q = l2n(rng.standard_normal(dim))
    centres = l2n(rng.standard_normal((5, dim)) + q)
    c = l2n(centres[rng.integers(0, 5, n_cands)] + spread * rng.standard_normal((n_cands, dim)))
    return q, np.ascontiguousarray(c[np.argsort(-(c @ q), kind="stable")])


@pytest.mark.parametrize(
    ("n_cands", "dim", "k", "seed"),
    [
        (400, 512, 9, 0),
        (120, 64, 9, 1),
        (50, 32, 3, 2),
        (37, 16, 0, 3),
        (11, 8, 9, 4),
        (10, 8, 9, 5),
        (5, 8, 9, 6),
        (2, 4, 9, 7),
        (1, 4, 9, 8),
    ],
)
def test_matches_loop_reference(n_cands, dim, k, seed):
    q, c = retrieval_case(np.random.default_rng(seed), n_cands, dim)
    order, scores = superglobal_rerank(q, c, k=k)
    want_order, want_scores = reference_rerank(q, c, k=k)
    np.testing.assert_array_equal(order, want_order)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_closed_form_two_orthogonal_candidates():
    # a = e0, b = e1 (a.b = 0): each refined vector is itself (neighbour weight beta * 0 = 0).
    # q.a = 0.8, q.b = 0.6 -> s1 = [0.8, 0.6]; expansion = max(a, b) = [1, 1, 0];
    # s2 = [1, 1]; final = [(0.8 + 1) / 2, (0.6 + 1) / 2] = [0.9, 0.8].
    q = np.array([0.8, 0.6, 0.0], dtype=np.float32)
    c = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    order, scores = superglobal_rerank(q, c)
    np.testing.assert_array_equal(order, [0, 1])
    np.testing.assert_allclose(scores, [0.9, 0.8], rtol=1e-6)


def test_closed_form_two_correlated_candidates():
    # a = [1, 0], b = [0.6, 0.8], s = a.b = 0.6, w = beta * s = 0.09, norm 1.09:
    #   R_a = (a + 0.09 b) / 1.09 = [1.054, 0.072] / 1.09
    #   R_b = (b + 0.09 a) / 1.09 = [0.690, 0.800] / 1.09
    # q = [0, 1]: s1 = [0.072, 0.800] / 1.09 -> ord = [b, a]
    # expansion = max(R_a, R_b) = [1.054, 0.800] / 1.09
    # s2_b = (1.054 * 0.690 + 0.8 * 0.8) / 1.09^2,  s2_a = (1.054^2 + 0.8 * 0.072) / 1.09^2
    q = np.array([0.0, 1.0], dtype=np.float32)
    c = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    s1_a, s1_b = 0.072 / 1.09, 0.8 / 1.09
    s2_b = (1.054 * 0.690 + 0.8 * 0.8) / 1.09**2
    s2_a = (1.054**2 + 0.8 * 0.072) / 1.09**2
    final = {1: (s1_b + s2_b) / 2, 0: (s1_a + s2_a) / 2}
    order, scores = superglobal_rerank(q, c)
    want = sorted(final, key=lambda i: -final[i])
    np.testing.assert_array_equal(order, want)
    np.testing.assert_allclose(scores, [final[i] for i in want], rtol=1e-5)


def test_single_candidate():
    # M = 1: k clamps to 0, R = g, expansion = g, final = (q.g + g.g) / 2.
    q = l2n(np.array([1.0, 1.0, 0.0]))
    g = l2n(np.array([[1.0, 0.0, 0.0]]))
    order, scores = superglobal_rerank(q, g)
    np.testing.assert_array_equal(order, [0])
    np.testing.assert_allclose(scores, [(float(q @ g[0]) + 1.0) / 2], rtol=1e-6)


def test_empty_candidates():
    order, scores = superglobal_rerank(np.ones(4, np.float32), np.zeros((0, 4), np.float32))
    assert order.shape == (0,) and scores.shape == (0,)


def test_identical_candidates_keep_input_order():
    # All refined vectors equal v: s1 = q.v, s2 = v.v = 1 for every candidate, all ties ->
    # stable order = input order, every score (q.v + 1) / 2.
    rng = np.random.default_rng(0)
    q, v = l2n(rng.standard_normal(16)), l2n(rng.standard_normal(16))
    c = np.repeat(v[None], 25, axis=0)
    order, scores = superglobal_rerank(q, c)
    np.testing.assert_array_equal(order, np.arange(25))
    np.testing.assert_allclose(scores, np.full(25, (float(q @ v) + 1) / 2), rtol=1e-5)


@pytest.mark.parametrize("k", [8, 9])
def test_duplicates_match_reference_scores(k):
    # Every candidate twice: with k = 8 (9 neighbours) the cut splits a duplicate pair, a tie at
    # the kNN boundary that takes the stable fallback path. Sorted scores match the reference.
    rng = np.random.default_rng(3)
    q, c = retrieval_case(rng, 60, 32)
    c = np.concatenate([c[:30], c[:30]])
    _, scores = superglobal_rerank(q, c, k=k)
    _, want = reference_rerank(q, c, k=k)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)


def test_top_neighbours_tie_rule_equals_stable_argsort():
    # Integer-valued similarities with many exact ties, including at the cut.
    rng = np.random.default_rng(0)
    sims = rng.integers(0, 4, (30, 30)).astype(np.float32)
    for n in (1, 3, 10, 29, 30):
        idx, vals = _top_neighbours(sims, n)
        want = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(vals, np.take_along_axis(sims, want, axis=1))


def test_output_is_a_sorted_permutation():
    q, c = retrieval_case(np.random.default_rng(1), 200, 64)
    order, scores = superglobal_rerank(q, c)
    assert order.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(np.sort(order), np.arange(200))
    assert np.all(np.diff(scores) <= 0)


def test_input_permutation_equivariance():
    # The method only uses similarities, so shuffling the input list (without ties) yields the
    # same candidates in the same final order with the same scores.
    rng = np.random.default_rng(2)
    q, c = retrieval_case(rng, 150, 64)
    perm = rng.permutation(150)
    order, scores = superglobal_rerank(q, c)
    order_p, scores_p = superglobal_rerank(q, c[perm])
    np.testing.assert_array_equal(perm[order_p], order)
    np.testing.assert_allclose(scores_p, scores, rtol=1e-5, atol=1e-6)


def test_cluster_support_beats_isolated_outlier():
    # Candidate 0 is closest to the query (cos 0.80) but isolated; 1..20 form a tight cluster a
    # bit further away (cos ~0.78). Neighbour averaging and the expansion lift the cluster above
    # the outlier, which has no similar neighbours.
    rng = np.random.default_rng(4)
    D = 64
    q = l2n(rng.standard_normal(D))

    def orth(v: np.ndarray) -> np.ndarray:  # unit vector orthogonal to q
        return l2n(v - (v @ q) * q)

    outlier = l2n(0.80 * q + 0.60 * orth(rng.standard_normal(D)))
    centre = l2n(0.78 * q + 0.62 * orth(rng.standard_normal(D)))
    cluster = l2n(centre + 0.005 * rng.standard_normal((20, D)))
    c = np.concatenate([outlier[None], cluster])
    assert np.argmax(c @ q) == 0  # the outlier leads the initial ranking
    order, _ = superglobal_rerank(q, c)
    assert order[0] != 0 and order[-1] == 0


def test_k_is_clamped_to_m_minus_one():
    q, c = retrieval_case(np.random.default_rng(5), 6, 8)
    clamped, _ = superglobal_rerank(q, c, k=100)
    np.testing.assert_array_equal(clamped, superglobal_rerank(q, c, k=5)[0])


def test_float64_inputs_are_computed_in_float32():
    q, c = retrieval_case(np.random.default_rng(6), 40, 16)
    o32, s32 = superglobal_rerank(q, c)
    o64, s64 = superglobal_rerank(q.astype(np.float64), c.astype(np.float64))
    np.testing.assert_array_equal(o32, o64)
    np.testing.assert_array_equal(s32, s64)


def test_batch_equals_single():
    rng = np.random.default_rng(7)
    cases = [retrieval_case(rng, 30, 16) for _ in range(4)]
    qs = np.stack([q for q, _ in cases])
    cs = np.stack([c for _, c in cases])
    orders, scores = superglobal_rerank_batch(qs, cs)
    assert orders.shape == (4, 30) and scores.shape == (4, 30)
    for i, (q, c) in enumerate(cases):
        o, s = superglobal_rerank(q, c)
        np.testing.assert_array_equal(orders[i], o)
        np.testing.assert_array_equal(scores[i], s)


def test_shape_validation():
    with pytest.raises(ValueError):
        superglobal_rerank(np.ones(4, np.float32), np.ones((3, 5), np.float32))
    with pytest.raises(ValueError):
        superglobal_rerank(np.ones(4, np.float32), np.ones((3, 4), np.float32), k=-1)
    with pytest.raises(ValueError):
        superglobal_rerank_batch(np.ones((2, 4), np.float32), np.ones((3, 5, 4), np.float32))
