"""Pooling / fusion maths against closed forms (models.layers)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.layers import functional as LF
from models.layers.modules import GeM, build_pool

pytestmark = pytest.mark.torch


def test_gem_p1_is_average_pooling() -> None:
    x = torch.rand(2, 5, 7, 3) + 0.1
    torch.testing.assert_close(LF.gem(x, 1.0), F.adaptive_avg_pool2d(x, 1))
    torch.testing.assert_close(LF.gem(x, torch.ones(1)), F.adaptive_avg_pool2d(x, 1))


def test_gem_large_p_approaches_max_pooling() -> None:
    x = torch.rand(2, 4, 6, 5) + 0.5
    mx = F.adaptive_max_pool2d(x, 1)
    # (mean x^p)^(1/p) -> max as p grows; the gap is at most max * (1 - n^(-1/p)).
    err_20 = (mx - LF.gem(x.double(), 20.0)).abs().max().item()
    err_200 = (mx - LF.gem(x.double(), 200.0)).abs().max().item()
    assert err_200 < err_20
    assert err_200 <= 1.5 * (1 - 30 ** (-1 / 200)) + 1e-9


def test_gem_p3_closed_form_and_clamp() -> None:
    x = torch.tensor([[[[1.0, 2.0], [0.0, -3.0]]]])  # zeros/negatives clamp to eps
    eps = 1e-6
    expected = ((1 + 8 + 2 * eps**3) / 4) ** (1 / 3)
    assert LF.gem(x, 3.0, eps).item() == pytest.approx(expected, rel=1e-6)


def test_gem_module_parameter_name_and_value() -> None:
    pool = GeM()
    assert [name for name, _ in pool.named_parameters()] == ["p"]
    assert pool.p.shape == (1,) and pool.p.item() == 3.0
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(pool(x), LF.gem(x, 3.0))


def test_l2n_unit_norm_and_zero_vector() -> None:
    x = torch.randn(4, 7, 3, 2)
    norms = torch.linalg.vector_norm(LF.l2n(x, dim=1), dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    torch.testing.assert_close(LF.l2n(x, dim=1), F.normalize(x, dim=1))
    assert torch.equal(LF.l2n(torch.zeros(2, 3), dim=1), torch.zeros(2, 3))


def test_orthogonal_fusion_is_orthogonal_and_complete() -> None:
    torch.manual_seed(0)
    fl = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    fg = torch.randn(2, 6, dtype=torch.float64)
    orth = LF.orthogonal_fusion(fl, fg)
    dots = (orth * fg[:, :, None, None]).sum(1)
    assert dots.abs().max() < 1e-12
    # The removed part is parallel to fg: fl - orth = c * fg at every location.
    removed = fl - orth
    coef = (fl * fg[:, :, None, None]).sum(1) / (fg * fg).sum(1)[:, None, None]
    torch.testing.assert_close(removed, coef[:, None] * fg[:, :, None, None])


def test_orthogonal_fusion_hand_example() -> None:
    fl = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    fg = torch.tensor([[2.0, 0.0]])  # not unit length: the projection divides by ||fg||^2
    assert LF.orthogonal_fusion(fl, fg).flatten().tolist() == [0.0, 4.0]


def test_mac_spoc_on_hand_built_tensor() -> None:
    x = torch.tensor([[[[1.0, 5.0], [2.0, 0.0]], [[-1.0, -2.0], [-3.0, -4.0]]]])
    assert LF.mac(x).flatten().tolist() == [5.0, -1.0]
    assert LF.spoc(x).flatten().tolist() == [2.0, -2.5]
    assert build_pool("mac")(x).flatten().tolist() == [5.0, -1.0]


def test_rmac_regions_square_map() -> None:
    # 6x6, L=2: whole map, level 1 one 6x6 region, level 2 a 2x2 grid of 4x4 regions.
    regions = LF.rmac_regions(6, 6, levels=2)
    assert regions == [(0, 0, 6, 6), (0, 0, 6, 6), (0, 0, 4, 4), (0, 2, 4, 4), (2, 0, 4, 4),
                       (2, 2, 4, 4)]


def test_rmac_regions_wide_map_get_extra_columns() -> None:
    regions = LF.rmac_regions(4, 10, levels=1)
    # Level 1 on a 4x10 map: side 4, several regions spread over the width, all inside.
    level1 = regions[1:]
    assert len(level1) >= 2 and all(r[0] == 0 and r[2] == r[3] == 4 for r in level1)
    assert level1[0][1] == 0 and level1[-1][1] + 4 <= 10


def test_rmac_sums_normalised_region_maxima() -> None:
    x = torch.zeros(1, 2, 6, 6)
    x[0, 0, 0, 0] = 2.0  # top-left corner, channel 0
    x[0, 1, 5, 5] = 3.0  # bottom-right corner, channel 1
    regions = LF.rmac_regions(6, 6, levels=2)
    expected = torch.zeros(2)
    for top, left, h, w in regions:
        v = x[0, :, top : top + h, left : left + w].amax(dim=(1, 2))
        expected += v / (v.norm() + 1e-6)
    torch.testing.assert_close(LF.rmac(x, levels=2).flatten(), expected)
    # Whole map: (2,3)/sqrt(13); the TL 4x4 region holds only channel 0 -> (1, 0), etc.
    assert LF.rmac(x, levels=2)[0, 0, 0, 0].item() == pytest.approx(
        2 / math.sqrt(13) * 2 + 1 + 0 + 0 + 0, rel=1e-5
    )
