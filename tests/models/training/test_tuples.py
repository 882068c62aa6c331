"""Hard-negative tuples (CFCD's fine stage): structure, the confusion policy, sharding, resume."""

from __future__ import annotations

import numpy as np
import pytest

from models.training.data import DataError
from models.training.tuples import Confusions, TupleBatchSampler, draw_tuples


def _labels(classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def test_tuples_are_anchor_positive_and_negatives_of_other_classes() -> None:
    labels = _labels(6, 5)
    tuples = draw_tuples(labels, 3, tuple_size=5, seed=1)
    assert len(tuples) == 3
    for t in tuples:
        assert len(t) == 5
        assert labels[t[0]] == labels[t[1]] and t[0] != t[1]
        assert all(labels[n] != labels[t[0]] for n in t[2:])
    # One pass: no image twice.
    flat = [i for t in tuples for i in t]
    assert len(set(flat)) == len(flat)


def test_draw_is_a_function_of_seed_and_epoch() -> None:
    labels = _labels(5, 4)
    a = draw_tuples(labels, 6, tuple_size=4, seed=3, epoch=2)
    assert a == draw_tuples(labels, 6, tuple_size=4, seed=3, epoch=2)
    assert a != draw_tuples(labels, 6, tuple_size=4, seed=3, epoch=3)


def test_passes_restart_when_the_data_runs_out() -> None:
    # 3 classes x 2 images: one 4-tuple per pass at most (one anchor class is spent), so 5
    # tuples need new passes; every tuple is still well formed.
    labels = _labels(3, 2)
    for t in draw_tuples(labels, 5, tuple_size=4):
        assert labels[t[0]] == labels[t[1]]
        assert labels[t[0]] not in {labels[n] for n in t[2:]}


def test_impossible_tuples_are_a_clear_error() -> None:
    with pytest.raises(DataError, match="class with >= 2 images"):
        draw_tuples(np.arange(5), 1, tuple_size=3)
    with pytest.raises(DataError, match="cannot build a tuple of 8"):
        draw_tuples(_labels(3, 2), 1, tuple_size=8)


def _false_positive_setup() -> tuple[np.ndarray, Confusions, set[int]]:
    # 10 classes x 40 images; every 4th image of classes 1..9 was predicted as class 0.
    labels = _labels(10, 40)
    predicted = labels.copy()
    fps = {i for i in range(len(labels)) if labels[i] != 0 and i % 4 == 0}
    predicted[list(fps)] = 0
    return labels, Confusions(predicted), fps


def test_correct_anchors_take_false_positives_of_their_class_half_the_time() -> None:
    labels, confusions, fps = _false_positive_setup()

    def fp_share(conf: Confusions | None) -> float:
        tuples = draw_tuples(labels, 300, tuple_size=8, seed=0, confusions=conf)
        negs = [n for t in tuples if labels[t[0]] == 0 for n in t[2:]]
        assert len(negs) > 100
        return sum(n in fps for n in negs) / len(negs)

    # Random negatives hit the set at its share of the other classes (90/360); the official
    # policy adds about half of the slots on top while the pass still has some.
    random_share, hard_share = fp_share(None), fp_share(confusions)
    assert random_share == pytest.approx(0.25, abs=0.07)
    assert hard_share > random_share + 0.2


def test_a_misclassified_anchor_gets_a_correct_positive_and_its_mistaken_class() -> None:
    # Class 0: images 0..3; 0 and 1 were predicted as class 2, 2 and 3 correctly.
    labels = _labels(6, 4)
    predicted = labels.copy()
    predicted[[0, 1]] = 2
    confusions = Confusions(predicted)
    mistaken_share = []
    for seed in range(40):
        for t in draw_tuples(labels, 4, tuple_size=6, seed=seed, confusions=confusions):
            if t[0] in (0, 1):
                assert t[1] in (2, 3)  # a correctly classified positive while there is one
                mistaken_share.append(sum(labels[n] == 2 for n in t[2:]) / 4)
    assert mistaken_share
    # P(class 2) per slot: 0.67 * 0.5 from the mistaken class (while it lasts) + random fill.
    assert np.mean(mistaken_share) > 0.3


def test_sampler_yields_whole_tuples_split_over_ranks() -> None:
    labels = _labels(8, 6)  # 48 images -> 12 tuples of 4 per epoch at most
    single = TupleBatchSampler(labels, 8, tuple_size=4, seed=5)
    assert single.batches_per_epoch == 6
    one = list(single)
    assert all(len(b) == 8 for b in one)
    for batch in one:
        idx = [i for i, _ in batch]
        for k in range(0, 8, 4):
            assert labels[idx[k]] == labels[idx[k + 1]]
    ranks = [TupleBatchSampler(labels, 8, tuple_size=4, seed=5, world_size=2, rank=r)
             for r in (0, 1)]
    assert ranks[0].batches_per_epoch == 3
    r0, r1 = list(ranks[0]), list(ranks[1])
    assert [b for pair in zip(r0, r1, strict=True) for b in pair] == one


def test_sampler_resumes_mid_epoch_and_changes_with_the_epoch() -> None:
    labels = _labels(8, 6)
    sampler = TupleBatchSampler(labels, 4, tuple_size=4, seed=2, group=2)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_start(3)
    assert len(sampler) == len(full) - 3
    assert list(sampler) == full[3:]
    assert all(e == 1 for b in full for _, e in b)
    sampler.set_epoch(2)
    assert list(sampler) != full


def test_sampler_refuses_micro_batches_that_split_a_tuple() -> None:
    with pytest.raises(DataError, match="multiple of the tuple size"):
        TupleBatchSampler(_labels(4, 4), 6, tuple_size=4)
    with pytest.raises(DataError, match="no full step of tuples"):
        TupleBatchSampler(_labels(2, 2), 8, tuple_size=8)
