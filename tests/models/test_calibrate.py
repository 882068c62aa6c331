"""BatchNorm calibration: cumulative statistics, restored state, failure leaves stats alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.calibrate import calibrate_batchnorm
from models.dolg import DOLG, DOLGConfig

pytestmark = pytest.mark.torch


def test_running_stats_are_the_average_over_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.1)).eval()
    batches = [torch.randn(2, 3, 5, 7) * 3 + 1, torch.randn(1, 3, 9, 4) - 2]
    used = calibrate_batchnorm(model, batches)
    with torch.no_grad():
        conv_outs = [model[0](b) for b in batches]
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in conv_outs])
    variances = torch.stack([o.transpose(0, 1).flatten(1).var(dim=1, unbiased=True)
                             for o in conv_outs])
    bn = model[1]
    assert used == 2
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.1 and not model.training and bn.num_batches_tracked.item() == 2


def test_dolg_calibration_gives_finite_normalised_activations() -> None:
    torch.manual_seed(0)
    model = DOLG(DOLGConfig()).eval()
    x = torch.randn(1, 3, 67, 45)
    calibrate_batchnorm(model, (torch.randn(1, 3, 64, 48) for _ in range(3)))
    assert not model.training
    with torch.no_grad():
        _, f4 = model.forward_features(x)
        out = model(x)
    assert torch.isfinite(out).all()
    # Uncalibrated (mean 0 / var 1) random nets blow up block after block; calibrated ones stay
    # in a range where fp16 cannot overflow.
    assert f4.abs().max() < 1e3
    assert model.globalmodel.s4.b3.f.c_bn.num_batches_tracked.item() == 3


def test_failed_calibration_keeps_previous_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(0.5)
    with pytest.raises(ValueError, match="no batches"):
        calibrate_batchnorm(model, [])
    # A [1,4,1,1] activation cannot be normalised in train mode: torch refuses.
    with pytest.raises(ValueError):
        calibrate_batchnorm(model, [torch.randn(2, 3, 2, 2), torch.randn(1, 3, 1, 1)])
    assert model[1].running_mean.eq(0.5).all() and model[1].momentum == 0.1
    assert not model.training
