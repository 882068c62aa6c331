"""Margin heads for training: (features [B,D], targets [B]) -> logits [B,C] for cross-entropy.

The descriptor never goes through a head; they exist only to train `DOLG`.
- `CurricularFace`: the official DOLG head (class "Arcface" there, `desc_cls`), ALGORITHMS.md 1.5.
- `ArcFace`: plain additive angular margin (Deng et al. 2019).
"""

from __future__ import annotations

import math

import torch
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
