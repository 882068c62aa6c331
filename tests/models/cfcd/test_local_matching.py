"""CFCD's local matching and triplet loss against hand-worked cases and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.cfcd import local_matching as lm
from models.cfcd.local_matching import match_attention, superfeature_triplet_loss

pytestmark = pytest.mark.torch


def _unit(*rows: tuple[float, ...]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def _angles(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))]
                         for d in degrees], dtype=torch.float64)


HIGH = torch.ones(4, dtype=torch.float64)


def test_mutual_nearest_neighbours_are_found_in_positive_order() -> None:
    # Query descriptors at 0, 90, 180, 270 degrees; positives are the same directions rotated
    # 5 degrees and listed in another order: p0~q2, p1~q0, p2~q3, p3~q1.
    query = _angles(0, 90, 180, 270)
    positive = _angles(185, 5, 275, 95)
    q, p = match_attention(query, positive, torch.tensor([4.0, 3.0, 2.0, 1.0]), lowe_ratio=1.0)
    # Attention keeps the top floor(4/2) = 2 positive locations: p0 and p1.
    assert p.tolist() == [0, 1]
    assert q.tolist() == [2, 0]


def test_all_locations_with_a_single_high_attention_half() -> None:
    query = _angles(0, 90, 180, 270)
    positive = _angles(185, 5, 275, 95)
    # Attention [1,2,3,4] keeps p2, p3.
    q, p = match_attention(query, positive, torch.tensor([1.0, 2.0, 3.0, 4.0]), lowe_ratio=1.0)
    assert p.tolist() == [2, 3]
    assert q.tolist() == [3, 1]


def test_non_reciprocal_pairs_are_dropped() -> None:
    # p0 at 0 deg and p1 at 10 deg both have q0 (at 4 deg) as nearest query descriptor, but
    # q0's nearest positive is p0 (4 < 6 degrees): only p0 is mutual. q1 is far away.
    query = _angles(4, 180)
    positive = _angles(0, 10)
    # floor(2/2) = 1 location is kept by attention: p1 first (rejected for not being
    # reciprocal), then p0.
    q, p = match_attention(query, positive, torch.tensor([1.0, 2.0]), lowe_ratio=1.0)
    assert p.numel() == 0 and q.numel() == 0
    q, p = match_attention(query, positive, torch.tensor([2.0, 1.0]), lowe_ratio=1.0)
    assert (q.tolist(), p.tolist()) == ([0], [0])


def test_lowe_ratio_is_per_positive_column_over_query_descriptors() -> None:
    # One positive p0 at 0 deg; queries at 10 deg (nearest) and 20 deg (second). Chord
    # distances 2 sin(theta/2): ratio = sin(5 deg) / sin(10 deg) = 0.5019.
    query = _angles(10, 20)
    positive = _angles(0, 180)
    attention = torch.tensor([2.0, 1.0])
    ratio = math.sin(math.radians(5)) / math.sin(math.radians(10))
    q, p = match_attention(query, positive, attention, lowe_ratio=ratio + 1e-6)
    assert (q.tolist(), p.tolist()) == ([0], [0])
    q, p = match_attention(query, positive, attention, lowe_ratio=ratio - 1e-6)
    assert p.numel() == 0
    # The default 0.9 keeps it; a second query at 11 deg (ratio 0.91) would not.
    assert match_attention(query, positive, attention)[1].tolist() == [0]
    assert match_attention(_angles(10, 11), positive, attention)[1].numel() == 0


def test_a_single_query_descriptor_has_ratio_zero() -> None:
    q, p = match_attention(_angles(0), _angles(3, 90), torch.tensor([5.0, 1.0]))
    assert (q.tolist(), p.tolist()) == ([0], [0])


def test_attention_mask_keeps_the_floor_half_largest() -> None:
    mask = lm.attention_mask(torch.tensor([0.5, 3.0, 1.0, 2.0, 0.1]))
    assert mask.tolist() == [False, True, False, True, False]
    assert lm.attention_mask(torch.tensor([7.0])).tolist() == [False]


def test_loss_of_one_matched_pair_equals_the_closed_form() -> None:
    # Anchor descriptor a = 0 deg matches positive p = 10 deg (both at location 0, top
    # attention). The two negatives each have one descriptor near a: 40 deg and 5 deg. Every
    # other location points the other way (180..) and is never the nearest.
    far = [170.0, 190.0, 200.0]
    anchor = _angles(0, *far)
    positive = _angles(10, 150, 210, 230)
    neg1 = _angles(40, 175, 185, 195)
    neg2 = _angles(5, 160, 215, 225)
    features = torch.stack([anchor, positive, neg1, neg2]) * 3.0  # scale: normalised inside
    attention = torch.tensor([[1.0, 1, 1, 1], [9.0, 1, 1, 1], [1.0] * 4, [1.0] * 4])
    attention[1, 1] = 8.0  # the top half of the positive: locations 0 and 1

    def sq(deg: float) -> float:  # squared chord between unit vectors `deg` apart
        return 2 - 2 * math.cos(math.radians(deg))

    # Location 1 of the positive (150 deg) has the anchor's 170 deg as nearest, whose nearest
    # positive is 150? 170 vs positives 10/150/210/230: nearest is 150 (20 deg) -> mutual;
    # Lowe ratio over anchor descriptors: 170 (20 deg) vs 190 (40 deg) -> sin10/sin20 = 0.508.
    # So two pairs: (a0, p0) and (a1, p1).
    q_idx, p_idx = match_attention(torch.nn.functional.normalize(anchor, dim=1),
                                   torch.nn.functional.normalize(positive, dim=1), attention[1])
    assert (q_idx.tolist(), p_idx.tolist()) == ([0, 1], [0, 1])
    # Pair 0: d+ = sq(10); negatives' nearest: 40 deg (sq 40) and 5 deg (sq 5).
    # Pair 1 (170 deg vs 150): d+ = sq(20); nearest in neg1 is 175 (5 deg), in neg2 160 (10).
    expected = sum(max(0.0, dp - dn + 0.1) for dp, dn in [
        (sq(10), sq(40)), (sq(10), sq(5)), (sq(20), sq(5)), (sq(20), sq(10)),
    ])
    loss = superfeature_triplet_loss(features, attention)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # The margin enters per (pair, negative) term.
    with_margin = superfeature_triplet_loss(features, attention, margin=0.5).item()
    assert with_margin == pytest.approx(sum(max(0.0, dp - dn + 0.5) for dp, dn in [
        (sq(10), sq(40)), (sq(10), sq(5)), (sq(20), sq(5)), (sq(20), sq(10)),
    ]), rel=1e-12)


def test_no_match_gives_a_differentiable_zero() -> None:
    # The positive's attended half points away from everything in the anchor ... and the
    # anchor has two identical descriptors, so every ratio is 1 > 0.9.
    anchor = _angles(0, 0)
    features = torch.stack([anchor, _angles(1, 2), _angles(90, 91), _angles(45, 46)])
    features.requires_grad_(True)
    loss = superfeature_triplet_loss(features, torch.ones(4, 2, dtype=torch.float64))
    assert loss.item() == 0.0
    loss.backward()
    assert features.grad is not None and torch.count_nonzero(features.grad) == 0


def _reference_loss(features: np.ndarray, attention: np.ndarray, margin: float,
                    ratio_th: float) -> float:
    """The spec's procedure (docs/ALGORITHMS.md 4.3, steps 1-7) written with plain loops."""
    unit = features / np.linalg.norm(features, axis=2, keepdims=True)
    q, p = unit[0], unit[1]
    nq, npos = q.shape[0], p.shape[0]
    dist = np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    best_p = [int(np.argmin(dist[i])) for i in range(nq)]
    best_q = [int(np.argmin(dist[:, j])) for j in range(npos)]
    top = set(np.argsort(-attention[1], kind="stable")[: npos // 2].tolist())
    loss = 0.0
    for j in range(npos):
        column = sorted(dist[:, j])
        second = column[1] if nq > 1 else math.inf
        if best_p[best_q[j]] != j or dist[best_q[j], j] / second > ratio_th or j not in top:
            continue
        a = q[best_q[j]]
        for neg in unit[2:]:
            n = neg[int(np.argmin(((neg - a) ** 2).sum(-1)))]
            loss += max(0.0, ((a - p[j]) ** 2).sum() - ((a - n) ** 2).sum() + margin)
    return loss


@pytest.mark.parametrize("seed", range(6))
def test_loss_equals_a_loop_reference_on_random_tuples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, n, d = 5, 12, 6
    anchor = rng.normal(size=(n, d))
    # Positive: a noisy, shuffled copy of the anchor, so there are real mutual matches.
    positive = anchor[rng.permutation(n)] + 0.3 * rng.normal(size=(n, d))
    # Negatives: noisier copies, so some triplets violate the margin and some do not.
    negatives = anchor[None] + 0.6 * rng.normal(size=(t - 2, n, d))
    features = np.concatenate([anchor[None], positive[None], negatives])
    attention = rng.random((t, n))
    got = superfeature_triplet_loss(torch.from_numpy(features), torch.from_numpy(attention))
    expected = _reference_loss(features, attention, 0.1, 0.9)
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert expected > 0


def test_gradient_flows_to_anchor_positive_and_negatives() -> None:
    rng = np.random.default_rng(1)
    anchor = rng.normal(size=(8, 4))
    features = torch.from_numpy(np.stack([
        anchor, anchor + 0.05 * rng.normal(size=(8, 4)), anchor + 0.2 * rng.normal(size=(8, 4))
    ])).requires_grad_(True)
    loss = superfeature_triplet_loss(features, torch.ones(3, 8, dtype=torch.float64))
    assert loss.item() > 0
    loss.backward()
    grad = features.grad
    assert grad is not None
    assert all(torch.count_nonzero(grad[i]) > 0 for i in range(3))
    # Finite differences on one coordinate (matching is piecewise constant: a small step
    # does not change it).
    eps = 1e-6
    bumped = features.detach().clone()
    bumped[0, 0, 0] += eps
    numeric = (superfeature_triplet_loss(bumped, torch.ones(3, 8, dtype=torch.float64))
               - loss.detach()) / eps
    assert numeric.item() == pytest.approx(grad[0, 0, 0].item(), rel=1e-4, abs=1e-6)


def test_tuple_loss_sums_tuples_and_local_descriptors_flatten_the_map() -> None:
    torch.manual_seed(0)
    fmap = torch.randn(6, 5, 3, 4, dtype=torch.float64)  # [B=6,C=5,h=3,w=4]
    local, attention = lm.local_descriptors(fmap)
    assert local.shape == (6, 12, 5) and attention.shape == (6, 12)
    assert torch.equal(local[2, 4 * 1 + 3], fmap[2, :, 1, 3])  # location (y=1, x=3)
    assert attention[2, 7].item() == pytest.approx(fmap[2, :, 1, 3].abs().sum().item())
    total = lm.tuple_triplet_loss(local, attention, tuple_size=3)
    parts = [superfeature_triplet_loss(local[i:i + 3], attention[i:i + 3]) for i in (0, 3)]
    assert total.item() == pytest.approx(sum(p.item() for p in parts))
    with pytest.raises(ValueError, match="multiple of the tuple size"):
        lm.tuple_triplet_loss(local[:5], attention[:5], tuple_size=3)


def test_matches_per_tuple_counts_the_pairs_the_loss_uses() -> None:
    query = _angles(0, 90, 180, 270)
    positive = _angles(185, 5, 275, 95)
    negative = _angles(45, 135, 225, 315)
    # Tuples 1 and 2: two matches each (p0, p1: the top-2 attention locations); tuple 3:
    # anchor and positive are one repeated descriptor -> every ratio is 0/0 -> no match.
    dup = _angles(0, 0, 0, 0)
    local = torch.stack([query, positive, negative, query, positive, negative,
                         dup, dup, negative])
    attention = torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 9, dtype=torch.float64)
    assert lm.matches_per_tuple(local, attention, 3).item() == pytest.approx(4 / 3)
