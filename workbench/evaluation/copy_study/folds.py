"""Held-out rates of the fitted rule: folds by picture (a picture, its edits and its crops are
in one fold), the rule fitted on the other folds and measured on the held-out one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.search.verdict import VerdictRule
from workbench.evaluation.copy_study.rule_fit import Evidence, fit, matches, outcomes


def fold_of(group: str, folds: int) -> int:
    """The fold of a picture: stable across runs and machines (SHA-256 of its name)."""
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % folds


@dataclass
class HeldOut:
    """Each row's outcome under the rule fitted without its fold."""

    rules: list[VerdictRule]  # the rule fitted for each fold (on the others)
    found: dict[str, np.ndarray]  # mode -> [E] bool: its source matched among the returned
    false: dict[str, np.ndarray]  # mode -> [E] bool: anything else matched among the returned


def cross_validate(ev: Evidence, folds: int, max_fpr: float, verify_top: int, side: int) -> HeldOut:
    """Fit on all folds but one, judge the held-out one with that rule; every fold in turn."""
    fold = np.array([fold_of(str(g), folds) for g in ev.group])
    held = HeldOut(
        rules=[],
        found={m: np.zeros(len(fold), bool) for m in ev.returned},
        false={m: np.zeros(len(fold), bool) for m in ev.returned},
    )
    for f in range(folds):
        rule = fit(ev.subset(fold != f), max_fpr, verify_top, side)
        held.rules.append(rule)
        test = fold == f
        for mode, (found, false) in outcomes(ev, matches(ev, rule)).items():
            held.found[mode][test] = found[test]
            held.false[mode][test] = false[test]
    return held


def held_out_summary(ev: Evidence, held: HeldOut) -> dict[str, Any]:
    """Per mode: the held-out rates, by edit, and the copies missed (picture/edit)."""
    pos, neg = ev.positive, ~ev.positive
    out = {}
    for mode in ev.returned:
        found, false = held.found[mode], held.false[mode]
        out[mode] = {
            "copies_found_rate": round(float(found[pos].mean()), 4),
            "copies": int(pos.sum()),
            "never_stored_match_rate": round(float(false[neg].mean()), 4),
            "never_stored": int(neg.sum()),
            "never_stored_matched": int(false[neg].sum()),
            "copies_with_a_wrong_match": int(false[pos].sum()),
            "found_rate_by_edit": {
                str(e): round(float(found[pos & (ev.edit == e)].mean()), 3)
                for e in sorted(set(ev.edit[pos]))
            },
            "missed_copies": sorted(
                f"{g}/{e}"
                for g, e, f in zip(ev.group[pos], ev.edit[pos], found[pos], strict=True)
                if not f
            ),
        }
    return out
