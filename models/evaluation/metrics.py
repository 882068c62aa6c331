"""Retrieval metrics of the revisited Oxford/Paris protocol (numpy only).

`compute_ap` and `compute_map` reproduce revisitop's python reference
(filipradenovic/revisitop, python/evaluate.py) bit for bit on every input the reference accepts:
same junk skipping, same trapezoidal AP, same mP@k, same accumulation order of the floating
point sums. They differ only where the reference crashes (documented at each guard).

Conventions (docs/ALGORITHMS.md section 5):
- `ranks` is [N_db, nq]: column q lists 0-based database indices for query q, best first.
  Indices >= len(imlist) (e.g. revisitop1m distractors appended after the database) are valid
  and simply never positive nor junk.
- `gnd` for `compute_map` is one dict per query with `ok` (positives) and optionally `junk`
  (ignored) index lists, as built by `protocol_gnd` from the raw `easy`/`hard`/`junk` pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Setup = Literal["easy", "medium", "hard"]
SETUPS: tuple[Setup, ...] = ("easy", "medium", "hard")


def compute_ap(ranks: Any, nres: int) -> float:
    """Average precision of one query with trapezoidal interpolation of the PR curve.

    ranks: 0-based (junk-adjusted) ranks of the retrieved positives, sorted ascending, [n_found].
    nres: number of positives of the query (|ok|); positives missing from `ranks` add 0.

    For the j-th found positive at rank r: p0 = 1 if r == 0 else j / r, p1 = (j + 1) / (r + 1),
    AP += (p0 + p1) * (1 / nres) / 2.
    """
    r = np.asarray(ranks, dtype=np.int64).reshape(-1)
    if r.size == 0:
        return 0.0
    recall_step = 1.0 / nres
    j = np.arange(r.size, dtype=np.float64)
    # p0 is j / r, except at rank 0 where the reference uses precision 1 (avoids 0 / 0).
    safe_r = np.where(r == 0, 1, r)
    precision_0 = np.where(r == 0, 1.0, j / safe_r)
    precision_1 = (j + 1.0) / (r + 1)
    terms = (precision_0 + precision_1) * recall_step / 2.0
    # cumsum adds strictly left to right like the reference's `ap += ...` loop (np.sum would use
    # pairwise summation and could differ in the last bit).
    return float(np.cumsum(terms)[-1])


def _positions(column: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Sorted 0-based positions in `column` [N] of the entries that belong to `ids`."""
    if ids.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.isin(column, ids)).astype(np.int64)


def compute_map(
    ranks: Any,
    gnd: Sequence[Mapping[str, Any]],
    kappas: Sequence[int] = (1, 5, 10),
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Mean average precision and mean precision@k over queries (revisitop reference).

    ranks: [N_db, nq] integer array of 0-based db indices, column q best first for query q.
    gnd: nq dicts with 'ok' (positives) and optionally 'junk' (ignored) db indices.
    kappas: the k of mP@k.

    Returns (map, aps [nq], mpr [len(kappas)], prs [nq, len(kappas)]), all as fractions in
    [0, 1] (not x100). A query with an empty 'ok' gets AP = NaN and prs = NaN and is left out of
    both means, as in the reference.

    Guards beyond the reference (which would crash there):
    - A query with positives but none of them in its (truncated) ranking: AP = 0 and P@k = 0,
      and it still counts in the means (the reference raises on `max()` of an empty array).
    - Every query empty: map and mpr are NaN (the reference raises ZeroDivisionError).
    """
    ranks_arr = np.asarray(ranks)
    if ranks_arr.ndim != 2:
        raise ValueError(f"ranks must be [N_db, nq], got shape {ranks_arr.shape}")
    nq = len(gnd)
    if ranks_arr.shape[1] != nq:
        raise ValueError(f"ranks has {ranks_arr.shape[1]} columns but gnd has {nq} queries")
    kappas = [int(k) for k in kappas]

    total_ap = 0.0
    aps = np.zeros(nq)
    mpr = np.zeros(len(kappas))
    prs = np.zeros((nq, len(kappas)))
    nempty = 0

    for i in range(nq):
        ok = np.asarray(gnd[i]["ok"], dtype=np.int64).reshape(-1)
        if ok.shape[0] == 0:
            aps[i] = np.nan
            prs[i, :] = np.nan
            nempty += 1
            continue
        junk_ids = np.asarray(gnd[i].get("junk", ()), dtype=np.int64).reshape(-1)

        column = ranks_arr[:, i]
        pos = _positions(column, ok)  # [n_found] sorted positions of positives
        junk = _positions(column, junk_ids)  # [n_junk] sorted positions of junk
        # Junk skipping: each positive moves up by the number of junk ranked strictly before it
        # (the reference's `pos[ip] > junk[ij]` loop), so junk neither helps nor hurts.
        if junk.size:
            pos = pos - np.searchsorted(junk, pos, side="left")

        ap = compute_ap(pos, ok.shape[0])
        total_ap = total_ap + ap
        aps[i] = ap

        if pos.size == 0:
            # Truncated ranking without any positive: nothing retrieved, precision 0 at every k.
            prs[i, :] = 0.0
        else:
            pos1 = pos + 1  # 1-based
            last = int(pos1.max())
            for j, k in enumerate(kappas):
                # If the last positive is ranked before k, the denominator shrinks to its rank,
                # so P@k = 1 whenever every positive is retrieved without negatives in between.
                kq = min(last, k)
                prs[i, j] = (pos1 <= kq).sum() / kq
        mpr = mpr + prs[i, :]

    n_valid = nq - nempty
    if n_valid == 0:
        return float("nan"), aps, np.full(len(kappas), np.nan), prs
    return float(total_ap / n_valid), aps, mpr / n_valid, prs


def _raw_gnd_list(gnd: Any) -> Sequence[Mapping[str, Any]]:
    """Accept either the raw per-query list or the whole gnd pickle dict (with key 'gnd')."""
    if isinstance(gnd, Mapping):
        return gnd["gnd"]
    return gnd


def protocol_gnd(gnd: Any, setup: Setup) -> list[dict[str, np.ndarray]]:
    """Build the per-query ok/junk sets of one revisited setup (docs/ALGORITHMS.md 5.2).

    gnd: the raw per-query dicts with 'easy', 'hard', 'junk' (or the whole pickle dict).
    easy:   ok = easy,        junk = junk + hard
    medium: ok = easy + hard, junk = junk
    hard:   ok = hard,        junk = junk + easy
    Concatenation order follows revisitop's example_evaluate.py.
    """

    def ids(g: Mapping[str, Any], key: str) -> np.ndarray:
        return np.asarray(g.get(key, ()), dtype=np.int64).reshape(-1)

    out: list[dict[str, np.ndarray]] = []
    for g in _raw_gnd_list(gnd):
        easy, hard, junk = ids(g, "easy"), ids(g, "hard"), ids(g, "junk")
        if setup == "easy":
            ok, jk = easy, np.concatenate([junk, hard])
        elif setup == "medium":
            ok, jk = np.concatenate([easy, hard]), junk
        elif setup == "hard":
            ok, jk = hard, np.concatenate([junk, easy])
        else:
            raise ValueError(f"unknown setup {setup!r}; expected one of {SETUPS}")
        out.append({"ok": ok, "junk": jk})
    return out


def _percent(x: float) -> float | None:
    """x in [0, 1] -> x * 100 rounded to 2 decimals; NaN -> None (valid JSON)."""
    if not np.isfinite(x):
        return None
    return float(np.around(x * 100.0, decimals=2))


def evaluate_revisitop(
    ranks: Any,
    gnd_raw: Any,
    kappas: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Easy/Medium/Hard mAP and mP@k (x100, 2 decimals) as a JSON-friendly dict.

    ranks: [N_db (+ distractors), nq] 0-based indices, best first per column.
    gnd_raw: the raw per-query dicts ('easy', 'hard', 'junk') or the whole gnd pickle dict.

    Returns {"n_queries": nq, "kappas": [...],
             "mAP": {"easy": float, "medium": float, "hard": float},
             "mP@k": {"easy": {"1": float, ...}, ...},
             "n_evaluated": {"easy": int, ...}}   (queries with a non-empty ok set)
    A metric that is undefined (every query empty) is None.
    """
    gnd_list = _raw_gnd_list(gnd_raw)
    kappas = [int(k) for k in kappas]
    result: dict[str, Any] = {
        "n_queries": len(gnd_list),
        "kappas": kappas,
        "mAP": {},
        "mP@k": {},
        "n_evaluated": {},
    }
    for setup in SETUPS:
        m, aps, mpr, _ = compute_map(ranks, protocol_gnd(gnd_list, setup), kappas)
        result["mAP"][setup] = _percent(m)
        result["mP@k"][setup] = {
            str(k): _percent(float(v)) for k, v in zip(kappas, mpr, strict=True)
        }
        result["n_evaluated"][setup] = int(np.count_nonzero(~np.isnan(aps)))
    return result
