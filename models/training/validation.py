"""Validation during training: is the descriptor getting better, not only the loss?

- Classification accuracy on the validation split: the nearest class centre by cosine between
  l2n(descriptor) and l2n(head.weight), i.e. the head's logits without margin (top-1, top-5).
- Retrieval on held-out images: every query's L2-normalised descriptor (extracted like the
  service does: long-side cap, chosen scales, per-scale l2n, mean, l2n) ranks the gallery by dot
  product; recall@1 and mAP (revisitop's trapezoidal AP, `models.evaluation.metrics`).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from models.evaluation.metrics import compute_map
from models.layers.functional import l2n
from models.training.data import RetrievalSet
from models.training.distributed import DistContext, all_reduce_sum
from models.training.transforms import RetrievalTransform, load_rgb

logger = logging.getLogger(__name__)


def _prepare(x: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def classification_accuracy(
    model: nn.Module,
    class_weight: Tensor,
    loader: DataLoader[Any],
    ctx: DistContext,
    *,
    autocast: AbstractContextManager[Any] | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy of nearest-class-centre classification over the whole val split
    (each process evaluates its shard; counts are summed over processes)."""
    was_training = model.training
    model.eval()
    centres = l2n(class_weight.detach().float(), dim=1)  # [C,D]
    k = min(5, centres.shape[0])
    counts = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # top1, topk, n
    try:
        for images, labels in loader:
            with autocast or nullcontext():
                desc = model(_prepare(images, ctx.device, channels_last))  # [B,D]
            cos = l2n(desc.float(), dim=1) @ centres.t()  # [B,C]
            topk = cos.topk(k, dim=1).indices  # [B,k]
            labels = labels.to(ctx.device).view(-1, 1)
            counts[0] += (topk[:, :1] == labels).sum()
            counts[1] += (topk == labels).any(dim=1).sum()
            counts[2] += labels.shape[0]
    finally:
        model.train(was_training)
    top1, topk_hits, n = all_reduce_sum(counts, ctx).tolist()
    if n == 0:
        return {}
    return {"val_top1": top1 / n, "val_top5": topk_hits / n, "val_images": int(n)}


@torch.no_grad()
def extract_descriptors(
    model: nn.Module,
    paths: list[Any],
    transform: RetrievalTransform,
    device: torch.device,
    *,
    autocast: AbstractContextManager[Any] | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """[N,D] float32 unit descriptors, one image (all its scales) at a time."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for path in paths:
            per_scale = []
            for planes in transform(load_rgb(path)):
                with autocast or nullcontext():
                    desc = model(_prepare(planes[None], device, channels_last))  # [1,D]
                per_scale.append(l2n(desc.float(), dim=1)[0])
            pooled = l2n(torch.stack(per_scale).mean(dim=0), dim=0)  # [D]
            out.append(pooled.cpu().numpy())
    finally:
        model.train(was_training)
    return np.stack(out).astype(np.float32)


def retrieval_metrics(
    model: nn.Module,
    retrieval: RetrievalSet,
    transform: RetrievalTransform,
    device: torch.device,
    *,
    autocast: AbstractContextManager[Any] | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """recall@1, recall@5 and mAP of the held-out queries against the gallery."""
    kwargs: dict[str, Any] = {"autocast": autocast, "channels_last": channels_last}
    q = extract_descriptors(model, [retrieval.root / p for p, _ in retrieval.queries],
                            transform, device, **kwargs)  # [nq,D]
    g = extract_descriptors(model, [retrieval.root / p for p, _ in retrieval.gallery],
                            transform, device, **kwargs)  # [ng,D]
    return rank_metrics(q, [i for _, i in retrieval.queries], g, [i for _, i in retrieval.gallery])


def rank_metrics(
    queries: np.ndarray, query_ids: list[str], gallery: np.ndarray, gallery_ids: list[str]
) -> dict[str, float]:
    """Metrics of dot-product ranking: queries [nq,D], gallery [ng,D] (unit rows)."""
    sims = queries @ gallery.T  # [nq,ng]
    # Stable sort on -sim: ties keep gallery order, so the result is deterministic.
    order = np.argsort(-sims, axis=1, kind="stable")  # [nq,ng], best first
    gallery_arr = np.asarray(gallery_ids)
    gnd = [{"ok": np.flatnonzero(gallery_arr == qid)} for qid in query_ids]
    mean_ap, _, _, _ = compute_map(order.T, gnd, kappas=(1,))
    hits = gallery_arr[order] == np.asarray(query_ids)[:, None]  # [nq,ng]
    return {
        "retrieval_recall_at_1": float(hits[:, 0].mean()),
        "retrieval_recall_at_5": float(hits[:, :5].any(axis=1).mean()),
        "retrieval_map": float(mean_ap),
        "retrieval_queries": len(query_ids),
        "retrieval_gallery": len(gallery_ids),
    }
