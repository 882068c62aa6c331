"""CFCD's fine-stage loss on local descriptors (docs/ALGORITHMS.md 4.3), as the official code
computes it (`core/losses/super_loss.py`: `match_attn`, `get_nindices`,
`SuperfeatureTripletLoss`).

One tuple = T images: index 0 the anchor (query), 1 its positive, 2..T-1 negatives. Each image
contributes N local descriptors (the last backbone stage flattened: [N = h*w, D = channels])
and an attention value per location (sum of |activation| over channels).

1. L2-normalise every descriptor.
2. Match anchor <-> positive: mutual nearest neighbours whose Lowe ratio (nearest / second
   nearest anchor descriptor, per positive column) is <= 0.9, restricted to the positive's
   floor(N/2) most attended locations.
3. For each matched anchor descriptor, its nearest descriptor in every negative (on detached
   values: the choice is not differentiated).
4. Sum over pairs and negatives of max(0, |a-p|^2 - |a-n|^2 + margin), margin 0.1, weight 1.0
   (the YAML's LAMDA 0.05 and MARGIN are read by the official code but never reach the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TRIPLET_MARGIN = 0.1
LOWE_RATIO = 0.9


@torch.no_grad()
def attention_mask(attention: Tensor) -> Tensor:
    """[N] bool: True at the floor(N/2) largest attention values (topk, as the official code)."""
    n = attention.shape[0]
    top = attention.topk(n // 2).indices
    return torch.zeros(n, dtype=torch.bool, device=attention.device).index_fill_(0, top, True)


@torch.no_grad()
def match_attention(
    query: Tensor, positive: Tensor, attention: Tensor, lowe_ratio: float = LOWE_RATIO
) -> tuple[Tensor, Tensor]:
    """Mutual-nearest-neighbour matches between L2-normalised local descriptors.

    query [Nq,D], positive [Np,D], attention [Np] (the positive's). Returns (query_idx [M],
    positive_idx [M]) as int64: positive indices ascending, query_idx[k] the nearest query
    descriptor of positive_idx[k]. A pair is kept when it is reciprocal, its Lowe ratio
    dist(nearest) / dist(second nearest query descriptor) is <= `lowe_ratio` (taken per
    positive column, as the official code does; with one query descriptor the second distance
    is +inf and the ratio 0), and the positive location is among the floor(Np/2) most attended.
    """
    dist = torch.cdist(query, positive)  # [Nq,Np] Euclidean
    best_p = dist.argmin(dim=1)  # [Nq]: nearest positive of each query descriptor
    best_q = dist.argmin(dim=0)  # [Np]: nearest query descriptor of each positive one
    cols = torch.arange(dist.shape[1], device=dist.device)
    reciprocal = best_p[best_q] == cols
    nearest = dist[best_q, cols]  # [Np]
    others = dist.clone()
    others[best_q, cols] = float("inf")
    second = others.min(dim=0).values  # [Np]; +inf when Nq == 1
    # NaN (0/0: duplicate descriptors) compares False, so such a pair is dropped.
    valid = reciprocal & (nearest / second <= lowe_ratio) & attention_mask(attention)
    positive_idx = torch.nonzero(valid).flatten()
    return best_q[positive_idx], positive_idx


def superfeature_triplet_loss(
    features: Tensor, attention: Tensor, margin: float = TRIPLET_MARGIN
) -> Tensor:
    """Summed local triplet loss of one tuple (0-d tensor).

    features [T,N,D] (0 anchor, 1 positive, 2.. negatives; not normalised), attention [T,N].
    Without any match the result is 0.0 but still depends on `features`, so every process
    of a DDP run backpropagates through the same graph (the official code does the same).
    """
    if features.dim() != 3 or features.shape[0] < 3:
        raise ValueError(f"features must be [T>=3, N, D], got {tuple(features.shape)}")
    if attention.shape != features.shape[:2]:
        raise ValueError(f"attention must be [T, N] = {tuple(features.shape[:2])}, "
                         f"got {tuple(attention.shape)}")
    unit = F.normalize(features, dim=-1)  # [T,N,D]
    query, positive, negatives = unit[0], unit[1], unit[2:]
    query_idx, positive_idx = match_attention(query, positive, attention[1])
    if query_idx.numel() == 0:
        return query[:1, :1].sum() * 0.0
    a = query[query_idx]  # [M,D]
    p = positive[positive_idx]  # [M,D]
    with torch.no_grad():
        # Nearest descriptor of each negative image for every matched anchor one: [T-2,M].
        a_rep = a.detach().unsqueeze(0).expand(negatives.shape[0], -1, -1)
        nearest = torch.cdist(a_rep, negatives.detach()).argmin(dim=2)
    n = torch.gather(negatives, 1, nearest.unsqueeze(-1).expand(-1, -1, a.shape[1]))  # [T-2,M,D]
    dist_pos = (a - p).pow(2).sum(dim=1)  # [M]
    dist_neg = (a.unsqueeze(0) - n).pow(2).sum(dim=2)  # [T-2,M]
    return (dist_pos.unsqueeze(0) - dist_neg + margin).clamp_min(0).sum()


def tuple_triplet_loss(
    local: Tensor, attention: Tensor, tuple_size: int, margin: float = TRIPLET_MARGIN
) -> Tensor:
    """Sum of `superfeature_triplet_loss` over the consecutive tuples of a batch.

    local [B,N,D], attention [B,N], B a multiple of `tuple_size` (the tuple sampler lays out
    (anchor, positive, negatives...) per tuple). The official loss sums, not averages, over the
    tuples of a GPU's batch.
    """
    batch = local.shape[0]
    if batch % tuple_size:
        raise ValueError(f"batch {batch} is not a multiple of the tuple size {tuple_size}")
    tuples = local.reshape(batch // tuple_size, tuple_size, *local.shape[1:])
    att = attention.reshape(batch // tuple_size, tuple_size, attention.shape[1])
    return torch.stack([
        superfeature_triplet_loss(t, a, margin) for t, a in zip(tuples, att, strict=True)
    ]).sum()


@torch.no_grad()
def matches_per_tuple(local: Tensor, attention: Tensor, tuple_size: int) -> Tensor:
    """Mean number of anchor-positive matches per tuple (0-d float), for the training log: a
    fine stage whose tuples find no matches trains the head's loss only."""
    batch = local.shape[0]
    counts = [
        match_attention(F.normalize(local[i], dim=-1), F.normalize(local[i + 1], dim=-1),
                        attention[i + 1])[0].numel()
        for i in range(0, batch - batch % tuple_size, tuple_size)
    ]
    return torch.tensor(sum(counts) / max(len(counts), 1), device=local.device)


def local_descriptors(feature_map: Tensor) -> tuple[Tensor, Tensor]:
    """Last-stage map [B,C,h,w] -> (local descriptors [B,h*w,C], attention [B,h*w]).

    Attention is the sum of absolute activations over channels (official MODEL_S2), computed
    before any normalisation.
    """
    attention = feature_map.abs().sum(dim=1).flatten(1)  # [B,h*w]
    return feature_map.flatten(2).transpose(1, 2), attention
