"""Margin heads for training: (features [B,D], targets [B]) -> logits [B,C] for cross-entropy.

The descriptor never goes through a head; they exist only to train `DOLG`.
- `CurricularFace`: the official DOLG head (class "Arcface" there, `desc_cls`),
  docs/ALGORITHMS.md 1.5.
- `ArcFace`: plain additive angular margin (Deng et al. 2019).
- `MadaCos`: CFCD's adaptive-scale, adaptive-margin cosine head, docs/ALGORITHMS.md 4.2.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from models.layers.functional import l2n


def _init_class_weights(weight: nn.Parameter) -> None:
    # The official head leaves its weight uninitialised (torch.Tensor); CFCD's copy uses
    # U(+-1/sqrt(D)), which we follow.
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(weight, -bound, bound)


def _cosine(features: Tensor, weight: Tensor) -> Tensor:
    """cos(theta) [B,C] between l2n(features [B,D]) and l2n(weight [C,D]), clamped to [-1,1]."""
    return (l2n(features, dim=1) @ l2n(weight, dim=1).t()).clamp(-1.0, 1.0)


class CurricularFace(nn.Module):
    """Official DOLG margin head ("Arcface" in feymanpriv/DOLG; actually CurricularFace).

    Keys `weight` [C,D] and buffer `t` [1] match the official `desc_cls.*`. In train mode each
    call updates t <- 0.01 * mean_b cos(theta_y) + 0.99 * t (no gradient) and reweights hard
    negatives (cos > cos(theta_y + m)) to cos * (t + cos). The official code always updates t;
    here eval mode leaves it untouched so that validation does not change the head.
    """

    t: Tensor  # buffer [1]

    def __init__(
        self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.15
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.register_buffer("t", torch.zeros(1))
        _init_class_weights(self.weight)

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        cos = _cosine(features, self.weight)  # [B,C]
        targets = targets.long().view(-1, 1)
        ct = cos.gather(1, targets)  # [B,1] cos(theta_y)
        # clamp: ct^2 may exceed 1 by rounding; the official sqrt would give NaN there.
        sin_t = (1.0 - ct * ct).clamp_min(0.0).sqrt()
        ctm = ct * self.cos_m - sin_t * self.sin_m  # cos(theta_y + m)
        target = torch.where(ct > self.threshold, ctm, ct - self.mm)
        hard = cos > ctm  # [B,C], decided on the unmodified cosines
        if self.training:
            with torch.no_grad():
                self.t.copy_(ct.mean() * 0.01 + (1.0 - 0.01) * self.t)
        cos = torch.where(hard, cos * (self.t + cos), cos)  # uses the updated t, as officially
        cos = cos.scatter(1, targets, target)
        return cos * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}"
        )


class ArcFace(nn.Module):
    """Additive angular margin: the target logit becomes s * cos(theta_y + m).

    Past theta_y > pi - m, cos(theta + m) stops being monotonic; the usual fallback
    cos(theta) - m * sin(m) keeps it decreasing (`easy_margin=False`), or with `easy_margin`
    the margin is applied only where cos(theta_y) > 0.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.15,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin
        self.easy_margin = easy_margin
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        _init_class_weights(self.weight)

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        cos = _cosine(features, self.weight)  # [B,C]
        targets = targets.long().view(-1, 1)
        ct = cos.gather(1, targets)  # [B,1]
        sin_t = (1.0 - ct * ct).clamp_min(0.0).sqrt()
        phi = ct * self.cos_m - sin_t * self.sin_m  # cos(theta_y + m)
        if self.easy_margin:
            phi = torch.where(ct > 0, phi, ct)
        else:
            phi = torch.where(ct > self.threshold, phi, ct - self.mm)
        return cos.scatter(1, targets, phi) * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}, easy_margin={self.easy_margin}"
        )


MadaCosMode = Literal["default", "median", "mean"]


def _gather_rows(x: Tensor) -> Tensor:
    """Concatenate a [B] tensor over all processes (rank order); itself outside DDP.

    all_gather needs equal sizes on every rank: the training loader drops the last incomplete
    batch, so every rank's batch has the same B.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class MadaCos(nn.Module):
    """CFCD's MadaCos head (docs/ALGORITHMS.md 4.2): an additive cosine margin whose scale s and
    margin m are re-derived from every (global) batch so that the median sample's target
    softmax probability is exactly `alpha`.

    Per batch, with c = l2n(f) l2n(W)^T [B,C] (no clamp) and c_y the target cosines gathered
    over all processes [B_global]:
        med = lower median of c_y, b* its index;  s = max(ln(9999999 (1-a)/a) / (1-med), 32)
        B_i = sum_{j != y_i} exp(s c_ij);  B_avg = B_{b*} ("default"), median or mean of B
        m = med - ln(B_avg a/(1-a)) / s, set to 0 when negative or in eval mode
        logits = s c - s m onehot(y)
    s and m are constants for backward (d logit / d c = s), as in CFCD's autograd.Function.

    Difference from CFCD's code: B is handled in log space (logsumexp), so a large s cannot
    overflow exp() to inf; CFCD's float32 exp overflows once s*c > 88, which turns m into -inf
    and silently drops the margin. Where CFCD's value is finite both agree.
    `weight` [C,D] matches CFCD's `desc_cls.weight`; the head has no buffers.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        alpha: float = 0.02,
        b_mode: MadaCosMode = "default",
        min_scale: float = 32.0,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if b_mode not in ("default", "median", "mean"):
            raise ValueError(f"b_mode must be default, median or mean, got {b_mode!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.alpha = alpha
        self.b_mode = b_mode
        self.min_scale = min_scale
        # Off only for tests / single-process use inside a process group.
        self.gather = gather
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        _init_class_weights(self.weight)
        # Last batch's adaptive s and m (0-d tensors, for logging; not state). Kept as tensors
        # so that training never waits on the device to log them.
        self.last_scale: Tensor | None = None
        self.last_margin: Tensor | None = None

    @torch.no_grad()
    def scale_and_margin(self, cos: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(s, m) as 0-d float64 tensors for cosines [B,C] and targets [B,1] (long)."""
        c = cos.detach().double()
        onehot = torch.zeros_like(c, dtype=torch.bool).scatter_(1, targets, True)
        ct = c.gather(1, targets).squeeze(1)  # [B]
        gather = self.gather and self.training
        ct_all = _gather_rows(ct) if gather else ct  # [B_global]
        # torch.median returns the lower of the two middle values for an even count, and its
        # index: the same convention as CFCD (which uses torch.median too).
        med, idx = torch.median(ct_all, dim=0)
        # 1 - med is kept >= 1e-6: a median target cosine that rounds to 1 would make s
        # infinite (and the logits NaN); this bounds s at ~2e7 and changes nothing else.
        scale = math.log(9999999.0 * (1.0 - self.alpha) / self.alpha) / (1.0 - med).clamp_min(1e-6)
        scale = scale.clamp_min(self.min_scale)
        # log B_i = logsumexp over the non-target columns of s c_ij.  [B]
        log_b = torch.logsumexp((scale * c).masked_fill(onehot, float("-inf")), dim=1)
        log_b_all = _gather_rows(log_b) if gather else log_b  # [B_global]
        if self.b_mode == "median":
            log_b_avg = torch.median(log_b_all)  # log is monotonic: the same element as B
        elif self.b_mode == "mean":
            log_b_avg = torch.logsumexp(log_b_all, dim=0) - math.log(log_b_all.numel())
        else:
            log_b_avg = log_b_all[idx]
        margin = med - (log_b_avg + math.log(self.alpha / (1.0 - self.alpha))) / scale
        # `not >= 0` also catches NaN; torch.where keeps this free of a host sync.
        keep = margin >= 0 if self.training else torch.zeros_like(margin, dtype=torch.bool)
        return scale, torch.where(keep, margin, torch.zeros_like(margin))

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        cos = l2n(features, dim=1) @ l2n(self.weight, dim=1).t()  # [B,C], not clamped
        targets = targets.long().view(-1, 1)
        scale, margin = self.scale_and_margin(cos, targets)
        self.last_scale, self.last_margin = scale, margin
        s = scale.to(cos.dtype)
        # s * m subtracted in the target column only: [B,1] scattered into [B,C].
        target_shift = (s * margin.to(cos.dtype)).expand(targets.shape[0], 1)
        return cos * s - torch.zeros_like(cos).scatter(1, targets, target_shift)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"alpha={self.alpha}, b_mode={self.b_mode}, min_scale={self.min_scale}"
        )
