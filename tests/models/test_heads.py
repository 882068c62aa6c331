"""Margin heads against hand-written references of their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from models.heads import ArcFace, CurricularFace

pytestmark = pytest.mark.torch


def _reference_curricular(features, weight, targets, t, s, m):
    """docs/ALGORITHMS.md 1.5, step by step, with Python loops over a tiny example."""
    B, C = features.shape[0], weight.shape[0]
    fn = [[v / math.sqrt(sum(u * u for u in f)) for v in f] for f in features.tolist()]
    wn = [[v / math.sqrt(sum(u * u for u in w)) for v in w] for w in weight.tolist()]
    cos = [[max(-1.0, min(1.0, sum(a * b for a, b in zip(fn[i], wn[j], strict=True))))
            for j in range(C)] for i in range(B)]
    ct = [cos[i][targets[i]] for i in range(B)]  # step 2
    ctm = [c * math.cos(m) - math.sqrt(1 - c * c) * math.sin(m) for c in ct]  # step 3
    target = [ctm[i] if ct[i] > math.cos(math.pi - m) else ct[i] - m * math.sin(math.pi - m)
              for i in range(B)]  # step 4
    mask = [[cos[i][j] > ctm[i] for j in range(C)] for i in range(B)]  # step 5
    t_new = 0.01 * sum(ct) / B + 0.99 * t  # step 6
    out = [[(cos[i][j] * (t_new + cos[i][j]) if mask[i][j] else cos[i][j]) for j in range(C)]
           for i in range(B)]  # step 7
    for i in range(B):
        out[i][targets[i]] = target[i]
    return torch.tensor(out, dtype=torch.float64) * s, t_new  # step 8


def test_curricularface_matches_spec_steps() -> None:
    torch.manual_seed(0)
    head = CurricularFace(4, 5, scale=30.0, margin=0.15).double().train()
    head.t.fill_(0.2)  # a non-zero t makes the hard-negative reweighting visible
    features = torch.randn(3, 4, dtype=torch.float64)
    targets = torch.tensor([0, 3, 3])
    expected, t_new = _reference_curricular(features, head.weight.detach(), targets.tolist(),
                                            0.2, 30.0, 0.15)
    logits = head(features, targets)
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)
    assert head.t.item() == pytest.approx(t_new, abs=1e-12)


def test_curricularface_t_moving_average_and_eval_freeze() -> None:
    head = CurricularFace(8, 6)
    assert head.t.shape == (1,) and head.t.item() == 0.0
    assert sorted(head.state_dict()) == ["t", "weight"]  # official desc_cls.weight / desc_cls.t
    features, targets = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    ct = torch.nn.functional.normalize(features) @ torch.nn.functional.normalize(head.weight).t()
    head(features, targets)
    expected = 0.01 * ct[torch.arange(4), targets].mean().item()
    assert head.t.item() == pytest.approx(expected, abs=1e-7)
    head.eval()
    head(features, targets)
    assert head.t.item() == pytest.approx(expected, abs=1e-7)


def test_curricularface_weight_is_initialised_and_trains() -> None:
    head = CurricularFace(512, 10)
    bound = 1 / math.sqrt(512)
    assert torch.isfinite(head.weight).all() and head.weight.abs().max() <= bound
    features = torch.randn(4, 512, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(head(features, torch.tensor([1, 2, 3, 4])),
                                             torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.weight.grad).all()


def test_arcface_margin_only_on_target_column() -> None:
    torch.manual_seed(0)
    s, m = 16.0, 0.3
    head = ArcFace(5, 4, scale=s, margin=m).double()
    features = torch.randn(3, 5, dtype=torch.float64)
    targets = torch.tensor([2, 0, 2])
    cos = torch.nn.functional.normalize(features) @ torch.nn.functional.normalize(head.weight).t()
    logits = head(features, targets)
    for i, y in enumerate(targets.tolist()):
        theta = math.acos(cos[i, y].item())
        if theta + m < math.pi:
            assert logits[i, y].item() == pytest.approx(s * math.cos(theta + m), rel=1e-9)
        for j in range(4):
            if j != y:
                assert logits[i, j].item() == pytest.approx(s * cos[i, j].item(), rel=1e-9)


def test_arcface_fallback_and_easy_margin() -> None:
    m = 0.5
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    features = torch.tensor([[-1.0, 0.01]], dtype=torch.float64)  # theta ~ pi against class 0
    targets = torch.tensor([0])
    hard = ArcFace(2, 2, scale=1.0, margin=m).double()
    easy = ArcFace(2, 2, scale=1.0, margin=m, easy_margin=True).double()
    with torch.no_grad():
        hard.weight.copy_(weight)
        easy.weight.copy_(weight)
    ct = torch.nn.functional.normalize(features)[0, 0].item()
    # theta + m > pi: cos(theta) - m sin(m) keeps the logit decreasing in theta.
    assert hard(features, targets)[0, 0].item() == pytest.approx(ct - m * math.sin(math.pi - m))
    # easy margin: no margin where cos(theta) <= 0.
    assert easy(features, targets)[0, 0].item() == pytest.approx(ct)
