"""Hard-negative tuples for CFCD's fine stage (docs/ALGORITHMS.md 4.3; the official
`DistributedTupleHEMSampler`).

A tuple is (anchor, positive of the anchor's class, `tuple_size - 2` negatives of other
classes). Negatives come preferentially from the stage-1 model's confusions, read from a scores
file (`models.training.confusions`) that says, for every training image, its class and the
class the stage-1 model predicted:
- a correctly classified anchor of class c: each negative is, with probability 0.5, a false
  positive of c (an image of another class predicted as c);
- a misclassified anchor: with probability 0.33 a false positive of c, else with probability
  0.5 an image of the class the anchor was mistaken for; its positive is preferably a
  correctly classified image of c;
- the remaining negatives: one image each from random other classes.
Within a pass over the data every image is used at most once; when no class has two unused
images left (or the negatives run out), a new pass starts with every image available again.
Without a scores file every negative is random (the official `DistributedTupleSampler`).

The draw is a pure function of (seed, epoch): the same on every process, which then takes its
own micro-batches, and a resumed run skips exactly the micro-batches it trained on. Each
micro-batch holds whole tuples, laid out anchor, positive, negatives..., as the loss expects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

from models.training.data import DataError

logger = logging.getLogger(__name__)

TUPLE_SIZE = 8
# Official probabilities (DistributedTupleHEMSampler): a false positive of the anchor's class
# for a correct anchor / for a misclassified one, then the class it was mistaken for.
P_FALSE_POSITIVE_CORRECT = 0.5
P_FALSE_POSITIVE_WRONG = 0.33
P_MISTAKEN_CLASS = 0.5


@dataclass(frozen=True)
class Confusions:
    """Stage-1 predictions of the training images: `predicted[i]` for sample i (same label
    space as the samples), -1 where the scores file has no line for it."""

    predicted: np.ndarray  # [num_samples] int64

    @classmethod
    def from_mapping(cls, num_samples: int, predicted: Mapping[int, int]) -> Confusions:
        out = np.full(num_samples, -1, dtype=np.int64)
        for index, pred in predicted.items():
            out[index] = pred
        return cls(out)


class _Pass:
    """One pass over the data: shuffled per-class pools; every image is drawn at most once."""

    def __init__(self, labels: np.ndarray, confusions: Confusions | None,
                 rng: np.random.Generator) -> None:
        self.rng = rng
        self.labels = labels
        self.used = np.zeros(len(labels), dtype=bool)
        num_classes = int(labels.max()) + 1
        order = rng.permutation(len(labels))
        self.pools: list[list[int]] = [[] for _ in range(num_classes)]
        for i in order.tolist():
            self.pools[labels[i]].append(i)
        self.remaining = np.bincount(labels, minlength=num_classes)
        self.predicted = confusions.predicted if confusions is not None else None
        # false_positives[c]: images of other classes predicted as c; correct[c]: images of c
        # predicted as c (both shuffled, popped from the end).
        self.false_positives: list[list[int]] = [[] for _ in range(num_classes)]
        self.correct: list[list[int]] = [[] for _ in range(num_classes)]
        if self.predicted is not None:
            for i in order.tolist():
                pred = int(self.predicted[i])
                if pred < 0 or pred >= num_classes:
                    continue
                (self.correct if pred == labels[i] else self.false_positives)[pred].append(i)

    def take(self, index: int) -> int:
        self.used[index] = True
        self.remaining[self.labels[index]] -= 1
        return index

    def pop_unused(self, pool: list[int]) -> int | None:
        while pool:
            i = pool.pop()
            if not self.used[i]:
                return self.take(i)
        return None

    def is_correct(self, index: int) -> bool:
        """Correctly classified by stage 1 (unknown counts as correct, like no confusion)."""
        if self.predicted is None:
            return True
        pred = int(self.predicted[index])
        return pred < 0 or pred == self.labels[index]

    def draw(self, tuple_size: int) -> list[int] | None:
        """One tuple, or None when this pass cannot make another one."""
        anchor_classes = np.flatnonzero(self.remaining >= 2)
        if anchor_classes.size == 0:
            return None
        c = int(self.rng.choice(anchor_classes))
        anchor = self.pop_unused(self.pools[c])
        assert anchor is not None
        correct = self.is_correct(anchor)
        positive = None
        if not correct:
            positive = self.pop_unused(self.correct[c])
        if positive is None:
            positive = self.pop_unused(self.pools[c])
        assert positive is not None
        negatives: list[int] = []
        if self.predicted is not None:
            mistaken = int(self.predicted[anchor])
            for _ in range(tuple_size - 2):
                n = None
                if correct:
                    if self.rng.random() < P_FALSE_POSITIVE_CORRECT:
                        n = self.pop_unused(self.false_positives[c])
                elif self.rng.random() < P_FALSE_POSITIVE_WRONG:
                    n = self.pop_unused(self.false_positives[c])
                elif self.rng.random() < P_MISTAKEN_CLASS:
                    n = self.pop_unused(self.pools[mistaken])
                if n is not None:
                    negatives.append(n)
        # Fill up with one image from each of several random other classes, cycling.
        while len(negatives) < tuple_size - 2:
            others = np.flatnonzero(self.remaining > 0)
            others = others[others != c]
            if others.size == 0:
                return None
            need = tuple_size - 2 - len(negatives)
            for k in self.rng.permutation(others)[:need].tolist():
                n = self.pop_unused(self.pools[k])
                assert n is not None
                negatives.append(n)
        return [anchor, positive, *negatives]


def draw_tuples(
    labels: Sequence[int] | np.ndarray,
    count: int,
    *,
    tuple_size: int = TUPLE_SIZE,
    seed: int = 0,
    epoch: int = 0,
    confusions: Confusions | None = None,
) -> list[list[int]]:
    """`count` tuples of sample indices, a pure function of the arguments."""
    labels = np.asarray(labels, dtype=np.int64)
    if tuple_size < 3:
        raise ValueError(f"tuple_size must be >= 3 (anchor, positive, negatives): {tuple_size}")
    counts = np.bincount(labels)
    if not (counts >= 2).any() or np.count_nonzero(counts) < 2:
        raise DataError("tuples need a class with >= 2 images and at least one other class")
    rng = np.random.default_rng((seed, epoch, 0x7C1E))
    tuples: list[list[int]] = []
    current = _Pass(labels, confusions, rng)
    fresh = True
    while len(tuples) < count:
        t = current.draw(tuple_size)
        if t is not None:
            tuples.append(t)
            fresh = False
            continue
        if fresh:
            raise DataError(
                f"cannot build a tuple of {tuple_size} images: {np.count_nonzero(counts)} "
                f"classes, {len(labels)} images (each tuple needs {tuple_size - 2} negatives "
                "from other classes)"
            )
        current, fresh = _Pass(labels, confusions, rng), True
    return tuples


class TupleBatchSampler(Sampler[list[tuple[int, int]]]):
    """Micro-batches of whole tuples as (index, epoch) keys for one rank, resumable mid-epoch.

    An epoch draws about one tuple per `tuple_size` training images (as the official sampler),
    rounded down to whole optimiser steps; micro-batch b of the epoch goes to rank
    b % world_size. Same interface as `EpochBatchSampler`.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        micro_batch: int,
        *,
        tuple_size: int = TUPLE_SIZE,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        group: int = 1,
        confusions: Confusions | None = None,
    ) -> None:
        if micro_batch % tuple_size:
            raise DataError(f"the micro-batch ({micro_batch} images per process) must be a "
                            f"multiple of the tuple size {tuple_size}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.tuple_size = tuple_size
        self.tuples_per_batch = micro_batch // tuple_size
        self.micro_batch = micro_batch
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.confusions = confusions
        self.epoch = 0
        self.start = 0
        per_step = world_size * group * self.tuples_per_batch  # tuples per optimiser step
        steps = (len(self.labels) // tuple_size) // per_step
        self.batches_per_epoch = steps * group  # per rank
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{len(self.labels)} training samples give no full step of tuples: each step "
                f"needs {per_step} tuples of {tuple_size} images (about {per_step * tuple_size} "
                "images per epoch)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, micro_batches: int) -> None:
        if not 0 <= micro_batches <= self.batches_per_epoch:
            raise ValueError(f"start {micro_batches} outside 0..{self.batches_per_epoch}")
        self.start = micro_batches

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        total = self.batches_per_epoch * self.world_size * self.tuples_per_batch
        tuples = draw_tuples(self.labels, total, tuple_size=self.tuple_size, seed=self.seed,
                             epoch=self.epoch, confusions=self.confusions)
        start, self.start = self.start, 0
        k = self.tuples_per_batch
        for b in range(start, self.batches_per_epoch):
            g = b * self.world_size + self.rank  # global micro-batch index
            yield [(i, self.epoch) for t in tuples[g * k:(g + 1) * k] for i in t]
