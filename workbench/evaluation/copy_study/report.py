"""What the study writes besides its rates: timing summaries, and the rule file
(app/search/copy_verdict.json) that the service loads and GET /health shows."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.search.verdict import VerdictRule
from workbench.evaluation.copy_study.recording import TOP_K


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95 and mean of timings in ms (zeros when there are none)."""
    a = np.asarray(values) if values else np.zeros(1)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "mean": round(float(a.mean()), 2),
    }


def rule_file(
    result: dict[str, Any], final: VerdictRule, cosine_only: dict[str, Any]
) -> dict[str, Any]:
    """The rule file's content: the final rule, the command and the held-out rates."""
    ho = result["held_out"]
    return {
        "rule": final.as_dict(),
        "measured": {
            "command": (
                "python -m workbench.evaluation.copy_verdict --distractors DIR --fetch "
                "--write-rule "
                f"--thumb-side {result['thumb_side']} --working-side {final.working_side}"
            ),
            "thumbnails_long_side": result["thumb_side"],
            "study": (
                f"{result['queries']['copies']} edited copies of the shared photos "
                f"({len(result['edits'])} edits) and {result['queries']['never_stored']} "
                f"never-stored queries (look-alike photos, wallpapers and their edits), "
                f"stores of {min(result['stores'].values())}+ items; rates held out "
                f"(5-fold by picture), top {TOP_K} hits"
            ),
            "image_search": {
                m: {
                    "copies_found_rate": ho[m]["copies_found_rate"],
                    "never_stored_match_rate": ho[m]["never_stored_match_rate"],
                }
                for m in ("plain", "superglobal")
            },
            "vector_search_cosine_only": {
                "copies_found_rate": round(cosine_only["plain"]["copies_found_rate"], 4),
                "never_stored_match_rate": round(
                    cosine_only["plain"]["never_stored_match_rate"], 4
                ),
                "note": "in-sample, the same rule without geometry",
            },
            "verify_ms_per_search": result["verify_ms_per_search"],
        },
    }
