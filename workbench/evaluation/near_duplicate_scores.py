"""The near-duplicate evaluation's figures from descriptors alone (pure numpy): rows kept at a
lower precision, recall@1 and the same-category rate over them, and the score-threshold study
with photos held out by fold. Shapes: originals [P, D], copies qvec [P, T, D] (T transforms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.evaluation.near_duplicates import recall_at_1
from models.evaluation.similarity import threshold_study

ROW_KINDS = ("fp16", "int8")


def stored_rows(kind: str, originals: np.ndarray, train: np.ndarray) -> np.ndarray:
    """[P,D] float32: the rows a store keeps at precision `kind` (fp16, or int8: FAISS's 8-bit
    scalar quantizer with ranges learned from `train` [N,D])."""
    if kind == "fp16":
        return originals.astype(np.float16).astype(np.float32)
    if kind == "int8":
        import faiss

        sq = faiss.ScalarQuantizer(originals.shape[1], faiss.ScalarQuantizer.QT_8bit)
        sq.train(np.ascontiguousarray(train, dtype=np.float32))
        return sq.decode(sq.compute_codes(np.ascontiguousarray(originals, dtype=np.float32)))
    raise ValueError(f"--rescore-rows: expected fp16 and/or int8, got {kind!r}")


def rows_study(
    kind: str,
    originals: np.ndarray,
    qvec: np.ndarray,
    names: list[str],
    queried: list[int],
    transforms: list[str],
    categories: dict[str, str] | None,
    folds: int,
) -> dict[str, Any]:
    """Near-duplicate recall@1, same-category rate and threshold study over rows of `kind`,
    exact scoring over all rows; `queried`: the photos whose copies are queried."""
    train = np.concatenate([originals, qvec.reshape(-1, qvec.shape[-1])])
    rows = stored_rows(kind, originals, train)  # [P,D]
    hits: dict[str, dict[str, str | None]] = {
        names[i]: {t: names[int(np.argmax(rows @ qvec[i, j]))] for j, t in enumerate(transforms)}
        for i in queried
    }
    out: dict[str, Any] = {
        "bytes_per_row": originals.shape[1] * (2 if kind == "fp16" else 1),
        "max_abs_score_error": round(
            float(np.abs((rows - originals) @ qvec.reshape(-1, qvec.shape[-1]).T).max()), 5
        ),
        "recall_at_1": {k: round(v, 4) for k, v in recall_at_1(hits).items()},
    }
    if categories is not None:
        # Neighbours scored from the stored rows, the photo itself as the (float) query.
        labels = [categories[n] for n in names]
        sims = originals @ rows.T  # [P,P]
        np.fill_diagonal(sims, -np.inf)
        best = sims.argmax(axis=1)
        out["semantic_nearest_other_rate"] = round(
            float(np.mean([labels[int(best[i])] == labels[i] for i in queried])), 4
        )
    if folds >= 2:
        out["score_threshold"] = threshold_folds(originals, qvec, folds, db_rows=rows)
    return out


def threshold_folds(
    originals: np.ndarray, qvec: np.ndarray, folds: int, db_rows: np.ndarray | None = None
) -> dict[str, object]:
    """originals [P,D], qvec [P,T,D] -> threshold study over `folds` held-out folds (photo i
    held out in fold i % folds): top-1 cosines of indexed photos' copies (and whether the top
    hit is their source) against those of never-indexed photos and their copies.
    `db_rows` [P,D]: the indexed rows as stored (default the originals)."""
    stored = originals if db_rows is None else db_rows
    n = originals.shape[0]
    pos, pos_ok, neg = [], [], []
    for f in range(folds):
        held = np.array([i % folds == f for i in range(n)])
        indexed = np.flatnonzero(~held)
        db = stored[indexed]  # [Pi,D]
        copies = qvec[indexed].reshape(-1, qvec.shape[-1])  # [Pi*T,D], source = row // T
        scores = copies @ db.T
        pos.append(scores.max(axis=1))
        pos_ok.append(scores.argmax(axis=1) == np.repeat(np.arange(len(indexed)), qvec.shape[1]))
        unindexed = np.concatenate([originals[held], qvec[held].reshape(-1, qvec.shape[-1])])
        neg.append((unindexed @ db.T).max(axis=1))
    return threshold_study(pos, pos_ok, neg)
