"""BatchNorm statistics calibration ("precise BN", pycls `compute_precise_bn_stats` in spirit).

A randomly initialised network has running_mean 0 / running_var 1 in every BN, which in eval
mode makes activations grow block after block (and overflow in fp16). Re-estimating the running
statistics on real images gives a random-init model sane, image-dependent descriptors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace every BN's running statistics with their average over `batches`.

    Each batch [B,3,H,W] (sizes may differ between batches) is run in train mode, so each BN
    normalises with its batch statistics; with momentum=None PyTorch keeps the cumulative
    (equal-weight) average of the per-batch mean and unbiased variance. Momentum and the
    model's train/eval state are restored afterwards. Returns the number of batches used.
    A BN sees B*h*w values per channel and needs more than one, so a batch of one image must
    be at least 33 px on each side (f4 is ceil(H/32) x ceil(W/32)).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("model has no BatchNorm layers to calibrate")
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    # Kept to undo a failed calibration (no batches, or a batch too small for train-mode BN).
    saved = [
        {k: v.clone() for k, v in bn.state_dict().items() if k.startswith(("running", "num_"))}
        for bn in bns
    ]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    device = next(model.parameters()).device
    count = 0
    completed = False
    try:
        model.train()
        for batch in batches:
            model(batch.to(device))
            count += 1
        completed = count > 0
    finally:
        for bn, momentum, stats in zip(bns, momenta, saved, strict=True):
            bn.momentum = momentum
            if not completed:
                bn.load_state_dict({**bn.state_dict(), **stats})
        model.train(was_training)
    if count == 0:
        raise ValueError("calibrate_batchnorm got no batches; statistics left unchanged")
    logger.info("calibrated %d BatchNorm layers on %d batches", len(bns), count)
    return count

