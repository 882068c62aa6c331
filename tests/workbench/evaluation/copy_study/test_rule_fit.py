"""workbench/evaluation/copy_study/rule_fit.py: the vectorised verdict agrees with the served
rule, and the fitted thresholds are the ones worked out by hand for a small set of scores."""

from __future__ import annotations

import numpy as np
import pytest

from app.search.verdict import VerdictRule
from workbench.evaluation.copy_study.rule_fit import Evidence, fit, matches, rates


def evidence(
    cos: list[list[float]],
    inliers: list[list[int]],
    is_source: list[list[bool]],
    positive: list[bool],
    too_small: list[bool] | None = None,
) -> Evidence:
    n = len(cos)
    return Evidence(
        cos=np.array(cos, dtype=np.float64),
        inliers=np.array(inliers, dtype=np.int64),
        is_source=np.array(is_source, dtype=bool),
        returned={"plain": np.ones((n, len(cos[0])), bool)},
        positive=np.array(positive),
        too_small=np.array(too_small or [False] * n),
        edit=np.array(["e"] * n),
        group=np.array([f"g{i}" for i in range(n)]),
    )


# Four copies (their source is hit 0) and two never-stored queries, one hit each:
#   copy 1: cosine 0.95, no thumbnail   -> found iff cosine_alone <= 0.95
#   copy 2: cosine 0.70, 30 inliers     -> found iff cosine_floor <= 0.70 (any min_inliers)
#   copy 3: cosine 0.50, 9 inliers      -> found iff cosine_floor <= 0.50 and min_inliers <= 9
#   copy 4: cosine 0.88, no thumbnail   -> found iff cosine_alone <= 0.88
#   other 1: cosine 0.89, no thumbnail  -> false iff cosine_alone <= 0.89
#   other 2: cosine 0.45, 7 inliers     -> false iff cosine_floor <= 0.45 and min_inliers <= 7
HAND = dict(
    cos=[[0.95], [0.70], [0.50], [0.88], [0.89], [0.45]],
    inliers=[[-1], [30], [9], [-1], [-1], [7]],
    is_source=[[True], [True], [True], [True], [False], [False]],
    positive=[True, True, True, True, False, False],
)


def test_fit_with_no_false_match_allowed_is_the_hand_computed_rule() -> None:
    # No false match: cosine_alone in {0.90, 0.92, 0.94} (> 0.89, <= 0.95), so copy 4 is lost;
    # copies 1-3 are found with floor 0.5 and min_inliers 6 or 8, or floor <= 0.45 and
    # min_inliers 8 (other 2 has 7). The stricter of the ties: floor 0.5, 8 inliers, 0.94.
    rule = fit(evidence(**HAND), max_fpr=0.0, verify_top=5, side=384)
    assert rule == VerdictRule(0.94, 0.5, 8, 5, 384)
    out = rates(evidence(**HAND), rule)["plain"]
    assert (out["copies_found"], out["never_stored_matched"]) == (3, 0)


def test_fit_allowing_one_false_match_in_two_finds_the_fourth_copy() -> None:
    # Half the negatives may match: cosine_alone 0.88 finds copy 4 and matches other 1; other 2
    # must stay out, so the same floor and inliers as before.
    rule = fit(evidence(**HAND), max_fpr=0.5, verify_top=5, side=384)
    assert rule == VerdictRule(0.88, 0.5, 8, 5, 384)
    out = rates(evidence(**HAND), rule)["plain"]
    assert (out["copies_found"], out["never_stored_matched"]) == (4, 1)


def test_fit_raises_when_no_rule_meets_the_limit() -> None:
    # A never-stored query identical to a stored item (cosine 0.999) matches under every rule.
    ev = evidence([[0.9], [0.999]], [[-1], [-1]], [[True], [False]], [True, False])
    with pytest.raises(ValueError, match="false-match limit"):
        fit(ev, max_fpr=0.0, verify_top=5, side=384)


def test_matches_is_the_served_decision_with_verify_top_and_small_queries() -> None:
    ev = evidence(
        cos=[[0.99, 0.7, 0.6, 0.55], [0.99, 0.7, 0.6, 0.55]],
        inliers=[[-1, 20, 20, 20], [-1, 20, 20, 20]],
        is_source=[[True, False, False, False]] * 2,
        positive=[True, True],
        too_small=[False, True],
    )
    rule = VerdictRule(0.95, 0.5, 10, 2, 384)
    m = matches(ev, rule)
    # Row 0: hit 0 by cosine alone; hits 1 and 2 are the first two in the band (verified);
    # hit 3 is beyond verify_top. Row 1: the query is too small, nothing matches.
    assert m.tolist() == [[True, True, True, False], [False, False, False, False]]
    for j in range(3):  # the served rule agrees hit by hit (with inliers where verified)
        assert rule.decide(float(ev.cos[0, j]), None if j == 0 else 20) == bool(m[0, j])


def test_rates_count_copies_found_and_never_stored_matched_per_mode() -> None:
    ev = evidence(**HAND)
    ev.returned["superglobal"] = np.array([[True], [False], [True], [True], [True], [True]])
    out = rates(ev, VerdictRule(0.85, 0.4, 6, 5, 384))
    # plain: every copy found; others 1 (0.89 >= 0.85) and 2 (7 inliers) matched.
    assert out["plain"]["copies_found"] == 4 and out["plain"]["never_stored_matched"] == 2
    assert out["plain"]["copies_found_rate"] == 1.0
    assert out["plain"]["never_stored_match_rate"] == 1.0
    # superglobal does not return copy 2's source.
    assert out["superglobal"]["copies_found"] == 3
    assert out["superglobal"]["copies_found_rate"] == 0.75
    assert out["superglobal"]["found_rate_by_edit"] == {"e": 0.75}
