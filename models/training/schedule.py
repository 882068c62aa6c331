"""Optimiser and learning-rate schedule of the official recipe (docs/ALGORITHMS.md 1.6).

SGD with Nesterov momentum 0.9, dampening 0 and weight decay 1e-4 on every parameter (BatchNorm
and biases included, as pycls does). The learning rate is a cosine over epochs with a linear
warm-up factor, evaluated once per epoch (pycls `get_epoch_lr`) or, optionally, at fractional
epochs once per optimiser step:

    lr(e) = 0.5 * base * (1 + cos(pi * e / max_epoch))
    lr(e) *= warmup_factor * (1 - e / warmup) + e / warmup      while e < warmup
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def epoch_lr(
    epoch: float,
    base_lr: float,
    max_epoch: int,
    warmup_epochs: float = 5.0,
    warmup_factor: float = 0.1,
) -> float:
    """Learning rate at (possibly fractional) epoch `epoch` (0-based)."""
    lr = 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / max_epoch))
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        lr *= warmup_factor * (1.0 - alpha) + alpha
    return lr


def build_sgd(
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    dampening: float = 0.0,
) -> torch.optim.SGD:
    """torch SGD with the official defaults (Nesterov requires dampening 0)."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
        dampening=dampening,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
