"""The `match` verdict on search hits: "this stored item is a copy of the query", not merely
similar.

The rule fuses the global cosine (the hit's score) with geometric verification
(`app.search.verify`), with thresholds fitted by `workbench/evaluation/copy_verdict.py`
and stored, with the error rates that script measured on held-out photos, in
`copy_verdict.json` beside this file (GET /health reports both):

    cosine >= cosine_alone                                  -> match (no geometry needed)
    cosine_floor <= cosine < cosine_alone, inliers >= min_inliers  -> match
    anything else                                           -> not a match

Geometry runs on at most `verify_top` hits per search (best cosine first, and only those in the
band that needs it), against the stored item's thumbnail. Without a query image (POST
/search/vector) or without a stored thumbnail (items added as vectors) only the cosine part
can say yes. A query image with a side under 32 px is never a match.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from app.index.store import Hit, VectorStore
from app.search.verify import (
    FeatureCache,
    LocalFeatures,
    QueryImage,
    extract,
    features_from_jpeg,
)

logger = logging.getLogger(__name__)

RULE_FILE = Path(__file__).with_name("copy_verdict.json")


@dataclass(frozen=True, slots=True)
class VerdictRule:
    cosine_alone: float
    cosine_floor: float
    min_inliers: int
    verify_top: int
    working_side: int

    def decide(self, cosine: float, inliers: int | None) -> bool:
        """inliers: geometric inliers, or None when geometry did not run for this hit."""
        if cosine >= self.cosine_alone:
            return True
        return cosine >= self.cosine_floor and inliers is not None and (inliers >= self.min_inliers)

    def needs_geometry(self, cosine: float) -> bool:
        return self.cosine_floor <= cosine < self.cosine_alone

    def as_dict(self) -> dict[str, Any]:
        """The form `copy_verdict.json` stores under "rule"."""
        return {
            "cosine_alone": self.cosine_alone,
            "cosine_floor": self.cosine_floor,
            "min_inliers": self.min_inliers,
            "verify_top": self.verify_top,
            "working_side": self.working_side,
        }


def describe(rule: VerdictRule) -> str:
    """The rule in words, for GET /health."""
    return (
        f"A hit is a copy (match=true) when its cosine is >= {rule.cosine_alone}, or when it is "
        f">= {rule.cosine_floor} and at least {rule.min_inliers} SIFT keypoints of the query "
        "and of the item's thumbnail (grey, long side "
        f"{rule.working_side} px, contrast-normalised with CLAHE) agree with one RANSAC "
        "similarity transform (scale within 1/5..5, inliers spread over the part both pictures "
        "share; the mirrored query is tried too). Geometry "
        f"runs on at most {rule.verify_top} hits per search, best cosine first. Without a query "
        "image (POST /search/vector) or a stored thumbnail only the cosine part applies; query "
        "images under 32 px on a side are never a match. Re-ranking changes the order only."
    )


@lru_cache(maxsize=1)
def load_rule_file() -> dict[str, Any]:
    """The fitted rule and its measured rates (the JSON that the study script writes)."""
    data: dict[str, Any] = json.loads(RULE_FILE.read_text())
    return data


def default_rule() -> VerdictRule:
    r = load_rule_file()["rule"]
    return VerdictRule(
        cosine_alone=float(r["cosine_alone"]),
        cosine_floor=float(r["cosine_floor"]),
        min_inliers=int(r["min_inliers"]),
        verify_top=int(r["verify_top"]),
        working_side=int(r["working_side"]),
    )


class CopyVerdict:
    """Sets `hit.match` on search hits; stored items' features come from their thumbnails and
    are cached per item version."""

    def __init__(self, store: VectorStore, rule: VerdictRule, cache_bytes: int) -> None:
        self.store = store
        self.rule = rule
        self.cache = FeatureCache(cache_bytes)

    def stored_features(self, hit: Hit) -> LocalFeatures | None:
        key = (hit.id, hit.row)
        found, features = self.cache.get(key)
        if found:
            return features
        data = self.store.thumbnail(hit.id)
        features = None if data is None else features_from_jpeg(data, self.rule.working_side)
        self.cache.put(key, features)
        return features

    def share_item_features(self, query: QueryImage, item_id: str, row: int) -> None:
        """`query` is the thumbnail of the stored item (item_id, row) (a by-id search): its
        straight features are that item's stored features, so they come from (and go into) the
        cache instead of being extracted twice, once as the query and once as a hit."""

        def cached_or_extract(grey: np.ndarray) -> LocalFeatures:
            found, features = self.cache.get((item_id, row))
            if found and features is not None:
                return features
            features = extract(grey)  # what features_from_jpeg computes from the same JPEG
            self.cache.put((item_id, row), features)
            return features

        query.share_straight(cached_or_extract)

    def inliers(self, query: QueryImage, hit: Hit) -> int | None:
        """Geometric inliers between the query and the hit's thumbnail; None without one."""
        stored = self.stored_features(hit)
        if stored is None:
            return None
        return query.inliers(stored, self.rule.min_inliers)

    def judge(self, hits: list[Hit], query: QueryImage | None) -> int:
        """Set `match` on every hit (`hits` in descending cosine order, scores = cosines).
        Returns how many hits were verified with geometry."""
        verified = 0
        for hit in hits:
            if query is not None and query.too_small:
                hit.match = False
                continue
            inliers = None
            if (
                query is not None
                and verified < self.rule.verify_top
                and self.rule.needs_geometry(hit.score)
            ):
                inliers = self.inliers(query, hit)
                verified += 1
            hit.match = self.rule.decide(hit.score, inliers)
        return verified
