"""workbench/evaluation/copy_study/folds.py: folds by picture, and held-out rates that show
what an in-sample fit hides."""

from __future__ import annotations

import numpy as np

from app.search.verdict import VerdictRule
from workbench.evaluation.copy_study.folds import cross_validate, fold_of, held_out_summary
from workbench.evaluation.copy_study.rule_fit import Evidence


def test_fold_of_is_stable_and_spreads_pictures_over_every_fold() -> None:
    folds = [fold_of(f"photo_{i}", 5) for i in range(200)]
    assert folds == [fold_of(f"photo_{i}", 5) for i in range(200)]
    assert set(folds) == {0, 1, 2, 3, 4}
    assert min(folds.count(f) for f in range(5)) > 20


def _groups_in(fold: int, count: int) -> list[str]:
    return [g for g in (f"g{i}" for i in range(100)) if fold_of(g, 2) == fold][:count]


def test_each_fold_is_judged_by_the_rule_fitted_without_it() -> None:
    (x, a_neg), (y, y_neg) = _groups_in(0, 2), _groups_in(1, 2)
    # Fold 0: a copy at cosine 0.88 and a far negative; fold 1: a copy at 0.95 and a
    # never-stored query at 0.89. No thumbnails: only cosine_alone can say yes.
    ev = Evidence(
        cos=np.array([[0.88], [0.30], [0.95], [0.89]]),
        inliers=np.full((4, 1), -1),
        is_source=np.array([[True], [False], [True], [False]]),
        returned={"plain": np.ones((4, 1), bool)},
        positive=np.array([True, False, True, False]),
        too_small=np.zeros(4, bool),
        edit=np.array(["e"] * 4),
        group=np.array([x, a_neg, y, y_neg]),
    )
    held = cross_validate(ev, folds=2, max_fpr=0.0, verify_top=5, side=384)
    # Fitted on fold 1: cosine_alone above 0.89, at most 0.95; the strictest is 0.94 (no
    # geometry evidence: the highest floor and inliers). Fitted on fold 0: 0.88 finds its copy.
    assert held.rules == [VerdictRule(0.94, 0.6, 20, 5, 384), VerdictRule(0.88, 0.6, 20, 5, 384)]
    # Held out, each fold pays for the other's rule: the 0.88 copy is missed, the 0.89
    # never-stored query matched.
    assert held.found["plain"].tolist() == [False, False, True, False]
    assert held.false["plain"].tolist() == [False, False, False, True]
    out = held_out_summary(ev, held)["plain"]
    assert out["copies_found_rate"] == 0.5 and out["never_stored_match_rate"] == 0.5
    assert out["missed_copies"] == [f"{x}/e"]
    assert (out["copies"], out["never_stored"], out["never_stored_matched"]) == (2, 2, 1)
