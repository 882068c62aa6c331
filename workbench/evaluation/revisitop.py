"""The revisitop protocol on descriptors: search (+ re-rank), score mAP and mP@k for Easy /
Medium / Hard, and the table revisitop's own code prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.evaluation.metrics import SETUPS, evaluate_revisitop
from workbench.evaluation.search import (
    TRUNCATION_NOTE,
    SearchOptions,
    search_exact,
    search_ivfpq,
    superglobal,
)


def format_table(name: str, results: dict[str, Any], title: str) -> str:
    """The E/M/H table: mAP and mP@k x100, and revisitop's own two summary lines."""
    kappas = results["kappas"]

    def cell(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.2f}"

    header = f"  {'':8s}{'mAP':>7s}" + "".join(f"{'mP@' + str(k):>8s}" for k in kappas)
    lines = [title, header]
    for setup in SETUPS:
        row = f"  {setup.capitalize():8s} {cell(results['mAP'][setup])}"
        row += "".join(f"  {cell(results['mP@k'][setup][str(k)])}" for k in kappas)
        lines.append(row)
    maps = ", ".join(f"{s[0].upper()}: {cell(results['mAP'][s]).strip()}" for s in SETUPS)
    prs = ", ".join(
        f"{s[0].upper()}: {[results['mP@k'][s][str(k)] for k in kappas]}" for s in SETUPS
    )
    lines.append(f">> {name}: mAP {maps}")
    lines.append(f">> {name}: mP@k{kappas} {prs}")
    return "\n".join(lines)


def evaluate_features(
    db: np.ndarray,
    queries: np.ndarray,
    gnd: list[dict[str, Any]],
    options: SearchOptions,
    name: str,
    title: str = "",
) -> dict[str, Any]:
    """Search (+ re-rank) and score descriptors: db [N, D] (database, then any distractors),
    queries [Q, D], gnd the raw per-query dicts. Returns the JSON-ready result part."""
    rerank = options.rerank == "superglobal"
    ranking = (
        search_exact(db, queries)
        if options.search == "exact"
        else search_ivfpq(db, queries, options, with_vectors=rerank)
    )
    results_global = evaluate_revisitop(ranking.ranks, gnd, options.kappas)
    title = f"{title}; {ranking.info['type']} search" if title else f"{ranking.info['type']} search"
    tables = [format_table(name, results_global, title + "; global ranking")]
    result: dict[str, Any] = {
        "search": ranking.info,
        "rerank": {"method": "none"},
        "results": results_global,
    }
    if rerank:
        ranks, rerank_info = superglobal(ranking, queries, options)
        result["rerank"] = rerank_info
        result["results_global"] = results_global
        result["results"] = evaluate_revisitop(ranks, gnd, options.kappas)
        tables.append(
            format_table(
                name,
                result["results"],
                title + f"; SuperGlobal re-ranking (M={rerank_info['M']}, "
                f"K={options.superglobal_k}, beta={options.superglobal_beta:g})",
            )
        )
    if ranking.info["type"] == "ivfpq":
        tables.append(f"note: {TRUNCATION_NOTE}")
    result["table"] = "\n\n".join(tables)
    return result
