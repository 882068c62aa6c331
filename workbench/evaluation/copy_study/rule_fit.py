"""Fitting the copy verdict's thresholds: recorded evidence in, a rule out (pure numpy).

Every (query, store) evaluation is a row of hits in cosine order with their geometric inliers;
a candidate rule is scored on all rows at once (`matches` is `CopyVerdict.judge` vectorised),
and `fit` keeps the rule that finds the most copies within the false-match limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.search.verdict import VerdictRule

FLOORS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6)  # cosine floors tried; geometry never below
ALONE = np.arange(0.80, 0.991, 0.02)  # cosines that are a match alone, tried
MIN_INLIERS = (6, 8, 10, 12, 15, 20)  # geometric inliers required in the band, tried


@dataclass
class Evidence:
    """Every recorded (query, store) evaluation as arrays [E, R] (R hits, cosine order, padded
    with cosine -2), so that thousands of candidate rules are scored in numpy."""

    cos: np.ndarray  # [E,R] float
    inliers: np.ndarray  # [E,R] int, -1 = no stored thumbnail
    is_source: np.ndarray  # [E,R] bool: the hit is the query's source picture
    returned: dict[str, np.ndarray]  # mode -> [E,R] bool: in the top 10 of that mode
    positive: np.ndarray  # [E] bool: the query's source is in that store
    too_small: np.ndarray  # [E] bool: the query image is too small for a verdict
    edit: np.ndarray  # [E] str
    group: np.ndarray  # [E] str: the picture the query comes from

    def subset(self, rows: np.ndarray) -> Evidence:
        return Evidence(
            self.cos[rows],
            self.inliers[rows],
            self.is_source[rows],
            {m: r[rows] for m, r in self.returned.items()},
            self.positive[rows],
            self.too_small[rows],
            self.edit[rows],
            self.group[rows],
        )


def matches(ev: Evidence, rule: VerdictRule) -> np.ndarray:
    """[E,R] bool: CopyVerdict.judge vectorised (the served pass checks they agree)."""
    band = (ev.cos >= rule.cosine_floor) & (ev.cos < rule.cosine_alone)
    verified = band & (np.cumsum(band, axis=1) <= rule.verify_top)
    geo = verified & (ev.inliers >= rule.min_inliers) & (ev.inliers >= 0)
    return ((ev.cos >= rule.cosine_alone) | geo) & ~ev.too_small[:, None]


def outcomes(ev: Evidence, m: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """mode -> (found [E], false [E]): a match on the source among that mode's returned hits,
    a match on anything else among them, for the matches `m` [E,R]."""
    return {
        mode: (np.any(m & ret & ev.is_source, axis=1), np.any(m & ret & ~ev.is_source, axis=1))
        for mode, ret in ev.returned.items()
    }


def rates(ev: Evidence, rule: VerdictRule) -> dict[str, Any]:
    """Per mode: copies found and never-stored queries matched under `rule` (in-sample)."""
    out: dict[str, Any] = {}
    pos, neg = ev.positive, ~ev.positive
    for mode, (found, false) in outcomes(ev, matches(ev, rule)).items():
        by_edit = {
            str(e): round(float(found[pos & (ev.edit == e)].mean()), 3)
            for e in sorted(set(ev.edit[pos]))
        }
        out[mode] = {
            "copies_found_rate": round(float(found[pos].mean()), 4) if pos.any() else 0.0,
            "copies": int(pos.sum()),
            "copies_found": int(found[pos].sum()),
            "never_stored_match_rate": round(float(false[neg].mean()), 4) if neg.any() else 0.0,
            "never_stored": int(neg.sum()),
            "never_stored_matched": int(false[neg].sum()),
            "copies_with_a_wrong_match": int(false[pos].sum()),
            "found_rate_by_edit": by_edit,
        }
    return out


def fit(ev: Evidence, max_fpr: float, verify_top: int, side: int) -> VerdictRule:
    """The rule with the most copies found (summed over the modes) whose false-match rate on
    these negatives is <= max_fpr in every mode; ties -> the stricter rule (higher floor, then
    more inliers, then higher cosine alone)."""
    best: tuple[tuple[float, ...], VerdictRule] | None = None
    pos, neg = ev.positive, ~ev.positive
    for alone in ALONE:
        for floor in FLOORS:
            for n in MIN_INLIERS:
                rule = VerdictRule(round(float(alone), 2), floor, n, verify_top, side)
                tpr = fpr = 0.0
                for found, false in outcomes(ev, matches(ev, rule)).values():
                    tpr += float(found[pos].mean())
                    fpr = max(fpr, float(false[neg].mean()))
                if fpr > max_fpr:
                    continue
                key = (round(tpr, 6), -fpr, floor, n, alone)
                if best is None or key > best[0]:
                    best = (key, rule)
    if best is None:
        raise ValueError("no rule meets the false-match limit")
    return best[1]
