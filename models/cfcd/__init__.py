"""CFCD (ICCV 2023, docs/ALGORITHMS.md 4): the deploy model and the fine stage's local loss."""

from models.cfcd.local_matching import match_attention, superfeature_triplet_loss

__all__ = ["match_attention", "superfeature_triplet_loss"]
