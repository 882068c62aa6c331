"""MadaCos (CFCD, docs/ALGORITHMS.md 4.2) against a hand-written reference of the spec."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.heads import MadaCos

pytestmark = pytest.mark.torch

ALPHA = 0.02


def _reference(features, weight, targets, alpha=ALPHA, training=True, mode="default"):
    """Spec 4.2 step by step with Python floats; returns (logits [B][C], s, m, b*)."""
    B, C = len(features), len(weight)
    unit = lambda v: [x / math.sqrt(sum(u * u for u in v)) for x in v]  # noqa: E731
    fn, wn = [unit(f) for f in features], [unit(w) for w in weight]
    c = [[sum(a * b for a, b in zip(fn[i], wn[j], strict=True)) for j in range(C)]
         for i in range(B)]  # step 1, no clamp
    cy = [c[i][targets[i]] for i in range(B)]
    b_star = sorted(range(B), key=lambda i: cy[i])[(B - 1) // 2]  # step 2: (lower) median
    med = cy[b_star]
    s = max(math.log(9999999 * (1 - alpha) / alpha) / (1 - med), 32.0)  # step 3
    b = [sum(math.exp(s * c[i][j]) for j in range(C) if j != targets[i]) for i in range(B)]
    if mode == "median":
        b_avg = sorted(b)[(B - 1) // 2]
    elif mode == "mean":
        b_avg = sum(b) / B
    else:
        b_avg = b[b_star]  # step 4
    m = med - math.log(b_avg * alpha / (1 - alpha)) / s  # step 5
    if m < 0 or not training:
        m = 0.0
    logits = [[s * c[i][j] - (s * m if j == targets[i] else 0.0) for j in range(C)]
              for i in range(B)]  # step 6
    return logits, s, m, b_star


def _confident_batch(batch: int, seed: int = 0):
    """Features near their class weight: target cosines ~0.9, so the margin is positive."""
    g = torch.Generator().manual_seed(seed)
    head = MadaCos(8, 5, alpha=ALPHA).double()
    targets = torch.randint(0, 5, (batch,), generator=g)
    features = head.weight.detach()[targets] + 0.25 * torch.randn(
        batch, 8, generator=g, dtype=torch.float64
    ) * head.weight.detach()[targets].norm(dim=1, keepdim=True)
    return head, features, targets


@pytest.mark.parametrize("batch", [5, 6])
@pytest.mark.parametrize("mode", ["default", "median", "mean"])
def test_madacos_matches_the_spec(batch: int, mode: str) -> None:
    head, features, targets = _confident_batch(batch)
    head.b_mode = mode
    logits = head(features, targets)
    expected, s, m, _ = _reference(features.tolist(), head.weight.tolist(), targets.tolist(),
                                   mode=mode)
    assert m > 0
    torch.testing.assert_close(logits, torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-9, atol=1e-9)
    assert float(head.last_scale) == pytest.approx(s, rel=1e-12)
    assert float(head.last_margin) == pytest.approx(m, rel=1e-9)


def test_median_sample_target_probability_is_alpha() -> None:
    head, features, targets = _confident_batch(7, seed=3)
    logits = head(features, targets)
    _, _, m, b_star = _reference(features.tolist(), head.weight.tolist(), targets.tolist())
    assert m > 0
    p = torch.softmax(logits[b_star], dim=0)[targets[b_star]].item()
    assert p == pytest.approx(ALPHA, rel=1e-9)


def test_eval_mode_and_small_median_drop_the_margin_and_floor_the_scale() -> None:
    head, features, targets = _confident_batch(6)
    head.eval()
    logits = head(features, targets)
    expected, _, m, _ = _reference(features.tolist(), head.weight.tolist(), targets.tolist(),
                                   training=False)
    assert m == 0.0 and float(head.last_margin) == 0.0
    torch.testing.assert_close(logits, torch.tensor(expected, dtype=torch.float64))
    # Random features: target cosines ~0, so s = ln(...)/(1 - med) < 32 is floored to 32.
    head.train()
    g = torch.Generator().manual_seed(1)
    head(torch.randn(6, 8, generator=g, dtype=torch.float64), torch.arange(6) % 5)
    assert float(head.last_scale) == 32.0


def test_scale_and_margin_are_constants_for_backward() -> None:
    head, features, targets = _confident_batch(6, seed=2)
    features.requires_grad_(True)
    F.cross_entropy(head(features, targets), targets).backward()
    s, m = float(head.last_scale), float(head.last_margin)
    ref_features = features.detach().clone().requires_grad_(True)
    cos = F.normalize(ref_features, dim=1) @ F.normalize(head.weight.detach(), dim=1).t()
    onehot = F.one_hot(targets, 5).double()
    F.cross_entropy(s * cos - s * m * onehot, targets).backward()
    torch.testing.assert_close(features.grad, ref_features.grad, rtol=1e-9, atol=1e-12)


def test_large_scale_does_not_overflow() -> None:
    """Target cosines ~0.999 give s ~ 10^4: CFCD's float32 exp(s c) overflows to inf there and
    silently drops the margin; the log-space computation keeps s and m finite. A median of
    exactly 1 (s = inf in CFCD) stays finite too."""
    head = MadaCos(8, 5)
    targets = torch.tensor([0, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    weight = head.weight.detach()[targets]
    features = weight + 0.03 * torch.randn(4, 8, generator=g) * weight.norm(dim=1, keepdim=True)
    logits = head(features, targets)
    assert torch.isfinite(logits).all()
    assert float(head.last_scale) > 1000 and float(head.last_margin) > 0
    logits = head(weight.clone(), targets)  # cos_y == 1 up to rounding
    assert torch.isfinite(logits).all() and math.isfinite(float(head.last_scale))
