"""Learning-rate schedule (docs/ALGORITHMS.md 1.6) in closed form, and the optimiser defaults."""

from __future__ import annotations

import math

import pytest
import torch

from models.training.schedule import build_sgd, epoch_lr, set_lr

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0, 0.1 * 0.05),  # warm-up starts at warmup_factor x base (cos(0) = 1)
        (2.5, 0.5 * 0.05 * (1 + math.cos(math.pi * 2.5 / 100)) * (0.1 * 0.5 + 0.5)),
        (4, 0.5 * 0.05 * (1 + math.cos(math.pi * 4 / 100)) * (0.1 * 0.2 + 0.8)),
        (5, 0.5 * 0.05 * (1 + math.cos(math.pi * 5 / 100))),  # warm-up over
        (50, 0.025),  # half way down the cosine
        (99, 0.5 * 0.05 * (1 + math.cos(math.pi * 99 / 100))),
        (100, 0.0),
    ],
)
def test_cosine_with_linear_warmup(epoch: float, expected: float) -> None:
    assert epoch_lr(epoch, 0.05, 100, 5, 0.1) == pytest.approx(expected, abs=1e-15)


def test_no_warmup_and_official_yaml_values() -> None:
    assert epoch_lr(0, 0.01, 100, warmup_epochs=0) == pytest.approx(0.01)
    # Official YAML (base 0.01): epoch 1 of the 5 warm-up epochs.
    assert epoch_lr(1, 0.01, 100) == pytest.approx(
        0.5 * 0.01 * (1 + math.cos(math.pi / 100)) * (0.1 * 0.8 + 0.2)
    )


def test_sgd_defaults_and_set_lr() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_sgd(params, lr=0.1)
    group = opt.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == (
        0.9, True, 1e-4, 0.0)
    set_lr(opt, 0.02)
    assert group["lr"] == 0.02
    with pytest.raises(ValueError, match="Nesterov"):
        build_sgd(params, lr=0.1, momentum=0.0)
