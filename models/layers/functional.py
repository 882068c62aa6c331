"""Pooling and fusion maths as pure tensor functions (cirtorch style).

Every function here is stateless and ONNX-traceable with dynamic spatial sizes, except
`rmac`, whose region grid depends on the (Python) feature-map size.
Shapes: B batch, C channels, H x W spatial.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "gem",
    "gem_plus",
    "l2n",
    "mac",
    "orthogonal_fusion",
    "regional_gem",
    "relu_plus",
    "rmac",
    "rmac_regions",
    "scale_gem",
    "spoc",
]

# SuperGlobal (ICCV 2023) defaults of the official code (docs/ALGORITHMS.md 3.2).
SUPERGLOBAL_GEM_P = 4.6
SUPERGLOBAL_GEM_EPS = 1e-8
SUPERGLOBAL_RGEM_P = 2.5
SUPERGLOBAL_RGEM_KERNEL = 5
SUPERGLOBAL_RELU_ALPHA = 0.014
SUPERGLOBAL_SGEM_P = 10.0


def l2n(x: Tensor, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_2, eps) along `dim`.

    Same semantics as `F.normalize` (a clamp, not an added epsilon), which is what the
    official DOLG uses for the local-feature direction; a zero vector stays zero.
    """
    return x / torch.linalg.vector_norm(x, ord=2, dim=dim, keepdim=True).clamp_min(eps)


def gem(x: Tensor, p: Tensor | float = 3.0, eps: float = 1e-6) -> Tensor:
    """Generalised mean over H x W: (mean_hw clamp(x, eps)^p)^(1/p).

    x [B,C,H,W] -> [B,C,1,1]. `p` may be a float or a learnable [1] tensor (DOLG `pool_g.p`).
    The clamp keeps pow() real and differentiable for the zeros a ReLU produces.
    p=1 is average pooling; p -> inf approaches max pooling.
    """
    pooled = F.adaptive_avg_pool2d(x.clamp(min=eps).pow(p), 1)
    if isinstance(p, Tensor):
        return pooled.pow(p.reciprocal())
    return pooled.pow(1.0 / p)


def mac(x: Tensor) -> Tensor:
    """Maximum activation of convolutions: max over H x W. [B,C,H,W] -> [B,C,1,1]."""
    return F.adaptive_max_pool2d(x, 1)


def spoc(x: Tensor) -> Tensor:
    """Sum-pooled convolutional features (as the mean, the usual normalised form). -> [B,C,1,1]."""
    return F.adaptive_avg_pool2d(x, 1)


def rmac_regions(height: int, width: int, levels: int = 3, overlap: float = 0.4) -> list[
    tuple[int, int, int, int]
]:
    """Square R-MAC regions (Tolias et al. 2016) as (top, left, size_h, size_w).

    Level l has square regions of side floor(2*min(H,W)/(l+1)) on a uniform grid with about
    `overlap` overlap; the long side gets `extra` more regions per level, with `extra` chosen
    so that consecutive regions overlap closest to 40% (same rule as cirtorch's `rmac`).
    The whole map is always the first region.
    """
    short, long_ = min(height, width), max(height, width)
    regions = [(0, 0, height, width)]
    extra = 0
    if height != width:
        # Try 2..7 regions along the long side and keep the one whose overlap is nearest 40%.
        best = None
        for idx, steps in enumerate(range(2, 8)):
            stride = (long_ - short) / (steps - 1)
            err = abs((short**2 - short * stride) / short**2 - overlap)
            if best is None or err < best[0]:
                best = (err, idx + 1)
        assert best is not None
        extra = best[1]
    extra_h, extra_w = (extra, 0) if height > width else (0, extra)
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)

        def starts(n_extra: int, length: int, side: int = side, half: int = half,
                   level: int = level) -> list[int]:
            count = level + n_extra
            step = 0.0 if count == 1 else (length - side) / (count - 1)
            return [int(math.floor(half + i * step) - half) for i in range(count)]

        for top in starts(extra_h, height):
            for left in starts(extra_w, width):
                regions.append((top, left, side, side))
    return regions


def rmac(x: Tensor, levels: int = 3, eps: float = 1e-6) -> Tensor:
    """Regional MAC: sum over `rmac_regions` of the L2-normalised region MAC. -> [B,C,1,1].

    Each region vector is normalised with an added eps (cirtorch's convention) before summing;
    the sum itself is not normalised (the caller normalises the final descriptor).
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    total = torch.zeros_like(x[:, :, :1, :1])
    for top, left, size_h, size_w in rmac_regions(height, width, levels):
        region = mac(x[:, :, top : top + size_h, left : left + size_w])
        total = total + region / (torch.linalg.vector_norm(region, dim=1, keepdim=True) + eps)
    return total


def orthogonal_fusion(fl: Tensor, fg: Tensor) -> Tensor:
    """Component of each local vector orthogonal to the global vector (DOLG eq. 4).

    fl [B,C,H,W] local features, fg [B,C] global feature ->
    orth [B,C,H,W] = fl - ((fl . fg) / ||fg||^2) fg at every location.
    No epsilon in ||fg||^2, as in the official code: fg = fc_t(GeM(f4)) is never zero in
    practice, and an epsilon would change the released model's outputs.
    """
    # [B,C] x [B,C,H,W] -> [B,1,H,W]: dot product of fg with the local vector per location.
    dot = (fl * fg[:, :, None, None]).sum(dim=1, keepdim=True)
    coef = dot / (fg * fg).sum(dim=1)[:, None, None, None]
    return fl - coef * fg[:, :, None, None]


# ------------------------------------------------------------------------------------------
# SuperGlobal descriptor ops (docs/ALGORITHMS.md 3.2). Tuned on CVNet, not on DOLG: optional.


def gem_plus(x: Tensor, p: float = SUPERGLOBAL_GEM_P, eps: float = SUPERGLOBAL_GEM_EPS) -> Tensor:
    """GeM+ ("gemp"): GeM with a fixed p (4.6) and clamp eps 1e-8. [B,C,H,W] -> [B,C,1,1].

    The official op flattens to [B,C,HW] and uses adaptive_avg_pool1d; the mean over H x W is
    the same number. The learned p of the checkpoint is ignored when this replaces it.
    """
    return gem(x, float(p), eps)


def _reflect_indices(size: int, pad: int, device: torch.device) -> Tensor:
    """Source indices [size + 2*pad] of a reflection padding along one axis.

    Equal to ReflectionPad's for size > pad. For smaller sizes (where ReflectionPad raises)
    out-of-range indices are clamped to 0, a bounded fallback that keeps tiny feature maps
    (a 1x1 f4 at small scales) working; a 1-pixel axis then behaves like replicate padding.
    Built with tensor ops (arange/abs/where/clamp) so that a TorchScript-traced ONNX graph keeps
    the axis size dynamic.
    """
    idx = torch.arange(-pad, size + pad, device=device).abs()  # mirror the left border
    last = size - 1
    idx = torch.where(idx > last, 2 * last - idx, idx)  # mirror the right border
    return idx.clamp(min=0)


def regional_gem(
    x: Tensor, p: float = SUPERGLOBAL_RGEM_P, kernel: int = SUPERGLOBAL_RGEM_KERNEL
) -> Tensor:
    """Regional-GeM ("rgem"): 0.5 * local power mean over a k x k window + 0.5 * x.

    x [B,C,H,W] (non-negative, e.g. a post-ReLU map) -> [B,C,H,W]. The official code computes
    LPPool2d(p, k, stride 1)(ReflectionPad(k // 2)(x / (k^2)^(1/p))); dividing by (k^2)^(1/p)
    turns the Lp norm into the power mean (mean_window x^p)^(1/p), which is what is computed
    here (avg_pool of x^p), with the same reflection padding (see `_reflect_indices` for maps
    smaller than the padding).
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd number, got {kernel}")
    pad = (kernel - 1) // 2
    height, width = x.shape[-2], x.shape[-1]
    padded = x.index_select(2, _reflect_indices(height, pad, x.device))
    padded = padded.index_select(3, _reflect_indices(width, pad, x.device))  # [B,C,H+2p,W+2p]
    local = F.avg_pool2d(padded.pow(p), kernel, stride=1).pow(1.0 / p)  # [B,C,H,W]
    return 0.5 * local + 0.5 * x


def relu_plus(x: Tensor, alpha: float = SUPERGLOBAL_RELU_ALPHA) -> Tensor:
    """ReLU+ ("relup"): max(x, alpha). alpha = 0 is a plain ReLU."""
    return x.clamp(min=alpha)


def scale_gem(descriptors: Tensor, p: float | None = None) -> Tensor:
    """Scale-GeM ("sgem"): pool per-scale descriptors [S,B,D] -> [B,D].

    p None (the official default, `infinity=True`): L2-normalise each scale's descriptor, then
    take the element-wise max over scales (the service's `scale_pooling: "max"`).
    p finite (official alternative, ps=10): gamma = global min of the stacked tensor, then
    (mean_s (d_s - gamma)^p)^(1/p) + gamma, without normalisation.
    The caller L2-normalises the result, as the official test path does.
    """
    if descriptors.ndim != 3:
        raise ValueError(f"expected [S,B,D] descriptors, got shape {tuple(descriptors.shape)}")
    if p is None:
        return l2n(descriptors, dim=-1).amax(dim=0)
    gamma = descriptors.min()
    return (descriptors - gamma).pow(p).mean(dim=0).pow(1.0 / p) + gamma
