"""compute_ap / compute_map against hand-computed values, a loop reference and the real gnd."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.metrics import compute_ap, compute_map, evaluate_revisitop, protocol_gnd

GND_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "revisitop"


def column(*ids: int) -> np.ndarray:
    """One query's ranking as a [N, 1] ranks array."""
    return np.asarray(ids, dtype=np.int64)[:, None]


# ---------------------------------------------------------------------------------- compute_ap


def test_ap_two_positives_at_0_and_2():
    # Positives at ranks 0 and 2 of 5, nres = 2 (recall step 1/2):
    #   j=0, r=0: p0 = 1 (rank 0),  p1 = 1/1 = 1     -> (1 + 1)     * 1/2 / 2 = 1/2
    #   j=1, r=2: p0 = 1/2,         p1 = 2/3         -> (1/2 + 2/3) * 1/2 / 2 = 7/24
    # AP = 1/2 + 7/24 = 19/24
    assert compute_ap([0, 2], 2) == pytest.approx(19 / 24, abs=1e-15)


def test_ap_missing_positive_counts_zero():
    # Same ranks but nres = 3 (one positive never retrieved): every trapezoid is scaled by 1/3,
    #   j=0: 2 * 1/3 / 2 = 1/3;  j=1: (1/2 + 2/3) * 1/3 / 2 = 7/36  -> AP = 19/36
    assert compute_ap([0, 2], 3) == pytest.approx(19 / 36, abs=1e-15)


def test_ap_perfect_and_empty():
    assert compute_ap([0, 1, 2, 3], 4) == 1.0
    assert compute_ap([], 4) == 0.0


def test_ap_single_positive_at_rank_r():
    # One positive at rank 3 of nres = 1: p0 = 0/3 = 0, p1 = 1/4 -> AP = (0 + 1/4) / 2 = 1/8
    assert compute_ap([3], 1) == pytest.approx(1 / 8, abs=1e-15)


# --------------------------------------------------------------------------------- compute_map


def test_map_single_query_matches_hand_ap():
    ranks = column(7, 3, 8, 4, 9)  # positives 7 and 8 at positions 0 and 2
    m, aps, mpr, prs = compute_map(ranks, [{"ok": [7, 8], "junk": []}])
    assert m == pytest.approx(19 / 24, abs=1e-15)
    np.testing.assert_allclose(aps, [19 / 24])
    # 1-based positives [1, 3]: P@1 = 1/1; P@5: kq = min(3, 5) = 3 -> 2/3; P@10 likewise 2/3
    np.testing.assert_allclose(prs, [[1.0, 2 / 3, 2 / 3]])
    np.testing.assert_allclose(mpr, [1.0, 2 / 3, 2 / 3])


def test_junk_is_skipped_not_counted():
    gnd = [{"ok": [7, 8], "junk": [5]}]
    # Junk first: positions 1 and 3 become 0 and 2 -> the 19/24 case.
    assert compute_map(column(5, 7, 3, 8, 4), gnd)[0] == pytest.approx(19 / 24, abs=1e-15)
    # Junk between the positives: 0 and 3 become 0 and 2 -> 19/24 again.
    assert compute_map(column(7, 5, 3, 8, 4), gnd)[0] == pytest.approx(19 / 24, abs=1e-15)
    # Junk after every positive changes nothing: 0, 2 -> 19/24.
    assert compute_map(column(7, 3, 8, 5, 4), gnd)[0] == pytest.approx(19 / 24, abs=1e-15)
    # Without the junk declaration the same ranking (positives at 1 and 3) scores lower:
    #   j=0, r=1: (0 + 1/2) / 4 = 1/8;  j=1, r=3: (1/3 + 2/4) / 4 = 5/24  -> AP = 1/3
    no_junk = compute_map(column(5, 7, 3, 8, 4), [{"ok": [7, 8]}])[0]
    assert no_junk == pytest.approx(1 / 3, abs=1e-15)


def test_empty_ok_is_nan_and_excluded_from_means():
    ranks = np.stack([np.array([7, 3, 8, 4, 9]), np.array([1, 2, 3, 4, 5])], axis=1)  # [5, 2]
    gnd = [{"ok": [7, 8], "junk": []}, {"ok": [], "junk": [1]}]
    m, aps, mpr, prs = compute_map(ranks, gnd)
    assert np.isnan(aps[1]) and np.isnan(prs[1]).all()
    assert m == pytest.approx(19 / 24, abs=1e-15)  # mean over the one non-empty query
    np.testing.assert_allclose(mpr, [1.0, 2 / 3, 2 / 3])


def test_all_queries_empty_gives_nan():
    m, aps, mpr, _ = compute_map(column(1, 2), [{"ok": []}])
    assert np.isnan(m) and np.isnan(aps).all() and np.isnan(mpr).all()


def test_precision_at_k_semantics():
    # 1-based positive positions [2, 4, 5] of nres = 3, kappas (1, 2, 3, 5, 10):
    #   k=1:  kq = 1  -> |{pos <= 1}| / 1 = 0
    #   k=2:  kq = 2  -> 1 / 2
    #   k=3:  kq = 3  -> 1 / 3
    #   k=5:  kq = 5  -> 3 / 5
    #   k=10: kq = min(max(pos) = 5, 10) = 5 -> 3 / 5 (denominator shrinks to the last positive)
    ranks = column(0, 11, 1, 12, 13, 2, 3)
    _, _, mpr, prs = compute_map(ranks, [{"ok": [11, 12, 13]}], kappas=(1, 2, 3, 5, 10))
    np.testing.assert_allclose(prs[0], [0, 1 / 2, 1 / 3, 3 / 5, 3 / 5])
    np.testing.assert_allclose(mpr, prs[0])


def test_precision_uses_junk_adjusted_positions():
    # Junk at 0 moves the positive at position 1 to 0, so P@1 = 1.
    _, _, _, prs = compute_map(column(5, 7, 3), [{"ok": [7], "junk": [5]}], kappas=(1,))
    assert prs[0, 0] == 1.0


def test_truncated_ranking_without_positives_is_zero_not_crash():
    # The reference crashes on max() of an empty array here; we score AP = 0 and P@k = 0 and keep
    # the query in the means (it has positives; the system just did not return them).
    ranks = np.stack([np.array([1, 2]), np.array([7, 3])], axis=1)  # [2, 2]
    gnd = [{"ok": [9]}, {"ok": [7]}]
    m, aps, mpr, prs = compute_map(ranks, gnd)
    np.testing.assert_array_equal(aps, [0.0, 1.0])
    np.testing.assert_array_equal(prs, [[0, 0, 0], [1, 1, 1]])
    assert m == 0.5
    np.testing.assert_array_equal(mpr, [0.5, 0.5, 0.5])


def test_shape_validation():
    with pytest.raises(ValueError):
        compute_map(np.arange(5), [{"ok": [1]}])
    with pytest.raises(ValueError):
        compute_map(np.zeros((5, 2), dtype=int), [{"ok": [1]}])


def loop_reference_map(ranks, gnd, kappas):
    """Straightforward transcription of docs/ALGORITHMS.md 5.3 (scalar loops, no numpy tricks)."""
    total, nempty = 0.0, 0
    aps, prs = [], []
    mpr = [0.0] * len(kappas)
    for i, g in enumerate(gnd):
        ok, junk = set(int(x) for x in g["ok"]), set(int(x) for x in g.get("junk", []))
        if not ok:
            aps.append(float("nan"))
            prs.append([float("nan")] * len(kappas))
            nempty += 1
            continue
        pos, n_junk_seen = [], 0
        for p, item in enumerate(ranks[:, i].tolist()):
            if item in ok:
                pos.append(p - n_junk_seen)
            if item in junk:
                n_junk_seen += 1
        ap = 0.0
        for j, r in enumerate(pos):
            p0 = 1.0 if r == 0 else float(j) / r
            p1 = float(j + 1) / (r + 1)
            ap += (p0 + p1) * (1.0 / len(g["ok"])) / 2.0
        total += ap
        aps.append(ap)
        row = []
        for k in kappas:
            kq = min(max(pos) + 1, k)
            row.append(sum(1 for r in pos if r + 1 <= kq) / kq)
        prs.append(row)
        mpr = [a + b for a, b in zip(mpr, row, strict=True)]
    n = len(gnd) - nempty
    return total / n, np.array(aps), np.array(mpr) / n, np.array(prs)


def test_matches_loop_reference_bit_for_bit_on_random_rankings():
    rng = np.random.default_rng(0)
    n_db, nq, kappas = 300, 12, (1, 5, 10, 50)
    ranks = np.stack([rng.permutation(n_db) for _ in range(nq)], axis=1)  # [n_db, nq]
    gnd = []
    for _ in range(nq):
        ids = rng.permutation(n_db)
        n_ok, n_junk = int(rng.integers(0, 30)), int(rng.integers(0, 30))
        gnd.append({"ok": ids[:n_ok], "junk": ids[n_ok : n_ok + n_junk]})
    gnd[3]["ok"] = []  # one empty query
    got = compute_map(ranks, gnd, kappas)
    want = loop_reference_map(ranks, gnd, kappas)
    assert got[0] == want[0]  # identical, not just close
    for a, b in zip(got[1:], want[1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_return_types():
    m, aps, mpr, prs = compute_map(column(7, 3, 8), [{"ok": [7, 8]}], kappas=(1, 5))
    assert isinstance(m, float)
    assert aps.shape == (1,) and mpr.shape == (2,) and prs.shape == (1, 2)


# -------------------------------------------------------------------------------- protocol_gnd


def test_protocol_sets():
    raw = [{"easy": [1, 2], "hard": [3], "junk": [4], "bbx": [0, 0, 1, 1]}]
    e, m, h = (protocol_gnd(raw, s)[0] for s in ("easy", "medium", "hard"))
    assert e["ok"].tolist() == [1, 2] and sorted(e["junk"].tolist()) == [3, 4]
    assert m["ok"].tolist() == [1, 2, 3] and m["junk"].tolist() == [4]
    assert h["ok"].tolist() == [3] and sorted(h["junk"].tolist()) == [1, 2, 4]
    with pytest.raises(ValueError):
        protocol_gnd(raw, "extreme")  # type: ignore[arg-type]


def test_evaluate_revisitop_dict_is_json_friendly():
    raw = {"gnd": [{"easy": [0], "hard": [1], "junk": [2]}, {"easy": [], "hard": [3], "junk": []}]}
    ranks = np.stack([np.array([0, 2, 1, 3]), np.array([3, 0, 1, 2])], axis=1)
    out = evaluate_revisitop(ranks, raw)
    json.dumps(out, allow_nan=False)
    assert out["mAP"] == {"easy": 100.0, "medium": 100.0, "hard": 100.0}
    assert out["n_evaluated"] == {"easy": 1, "medium": 2, "hard": 2}
    assert out["mP@k"]["medium"] == {"1": 100.0, "5": 100.0, "10": 100.0}
    # Query 0, Hard: positive 1 sits at position 2 behind junk 2 (skipped) and easy 0 (junk for
    # Hard), so it moves to rank 0 -> still perfect.


# ----------------------------------------------------------------------- real ground truth files


def load_real(name: str) -> dict:
    path = GND_DIR / f"gnd_{name}.pkl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    with open(path, "rb") as f:
        return pickle.load(f)


def ideal_ranks(cfg: dict, junk_first: bool = False) -> np.ndarray:
    """[n, nq] rankings: easy, then hard, then junk, then the rest (or junk moved to the top)."""
    n = len(cfg["imlist"])
    cols = []
    for g in cfg["gnd"]:
        head = (
            [*g["junk"], *g["easy"], *g["hard"]]
            if junk_first
            else [*g["easy"], *g["hard"], *g["junk"]]
        )
        rest = np.setdiff1d(np.arange(n), head)
        cols.append(np.concatenate([np.asarray(head, dtype=np.int64), rest]))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize(
    ("name", "n_db", "n_easy"), [("roxford5k", 4993, 68), ("rparis6k", 6322, 70)]
)
def test_real_gnd_perfect_reversed_and_junk_first(name, n_db, n_easy):
    cfg = load_real(name)
    assert len(cfg["imlist"]) == n_db and len(cfg["qimlist"]) == 70 and len(cfg["gnd"]) == 70

    ranks = ideal_ranks(cfg)
    assert ranks.shape == (n_db, 70)
    out = evaluate_revisitop(ranks, cfg)
    # Easy ok first (hard/junk are junk for Easy), easy+hard first, and for Hard the easy images
    # ahead of the hard ones are junk, so all three setups are perfect.
    assert out["mAP"] == {"easy": 100.0, "medium": 100.0, "hard": 100.0}
    for setup in ("easy", "medium", "hard"):
        assert out["mP@k"][setup] == {"1": 100.0, "5": 100.0, "10": 100.0}
    # ROxf has 2 queries with no easy positives (balliol_000187, hertford_000082): NaN, excluded.
    assert out["n_evaluated"] == {"easy": n_easy, "medium": 70, "hard": 70}
    aps_easy = compute_map(ranks, protocol_gnd(cfg["gnd"], "easy"))[1]
    empty = [cfg["qimlist"][i] for i in np.flatnonzero(np.isnan(aps_easy))]
    if name == "roxford5k":
        assert empty == ["balliol_000187", "hertford_000082"]

    # Junk ranked above everything is skipped: still 100.
    junk_first = evaluate_revisitop(ideal_ranks(cfg, junk_first=True), cfg)
    assert junk_first["mAP"] == {"easy": 100.0, "medium": 100.0, "hard": 100.0}

    # The reversed ranking puts every positive at the bottom.
    reversed_out = evaluate_revisitop(ranks[::-1], cfg)
    for setup in ("easy", "medium", "hard"):
        assert reversed_out["mAP"][setup] < 10.0
        assert reversed_out["mP@k"][setup]["1"] == 0.0
