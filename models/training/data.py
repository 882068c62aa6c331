"""Training data: image lists and folder trees, the train/val split, datasets, samplers, loaders.

Sources
- GLDv2-style list files as the official code reads them: one `<relative_path> <class_id>` per
  line (paths relative to a root folder; a path may contain spaces, the id is the last field).
  Non-contiguous ids (raw landmark ids) are remapped to 0..C-1 in sorted order.
- Class-per-folder trees: `root/<class>/**/<image>`; classes are the sorted folder names.
- Retrieval lists for the held-out figure: `<relative_path> <instance_id> <query|gallery>`.

Reproducibility
- The split is a pure function of (paths, labels, fraction, seed): each class is ordered by a
  hash of (seed, path), so it does not depend on the list order and survives the list growing.
- The sampler is torch's DistributedSampler (seeded, `set_epoch` per epoch; rank r of w takes
  every w-th index), grouped into micro-batches here; every index is tagged with its epoch so
  the dataset derives each sample's augmentation RNG from (seed, epoch, index). Order and
  augmentation therefore depend only on the seed and the epoch, never on the worker count, and a
  run resumed mid-epoch skips exactly the micro-batches it already trained on.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from models.training.transforms import load_rgb

logger = logging.getLogger(__name__)

# app.inference.preprocess.IMAGE_SUFFIXES (models never imports app; a test holds them equal).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
Role = Literal["query", "gallery"]


class DataError(ValueError):
    """A list, folder or split cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, '/'-separated
    label: int


@dataclass(frozen=True)
class LabelledSet:
    """Samples with contiguous labels 0..C-1 and what each label was called in the source."""

    samples: list[Sample]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------------- sources


def _split_line(line: str, fields: int, where: str) -> list[str]:
    parts = line.rsplit(maxsplit=fields - 1)
    if len(parts) != fields:
        raise DataError(f"{where}: expected {fields} whitespace-separated fields, got {line!r}")
    return parts


def read_image_list(list_path: str | Path) -> list[tuple[str, str]]:
    """(relative_path, class_id) pairs of a `<relative_path> <class_id>` list file.

    Blank lines and lines starting with '#' are skipped.
    """
    list_path = Path(list_path)
    pairs: list[tuple[str, str]] = []
    with list_path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            path, class_id = _split_line(line, 2, f"{list_path.name}:{number}")
            pairs.append((path, class_id))
    if not pairs:
        raise DataError(f"{list_path.name}: no samples")
    return pairs


def _sort_key(class_id: str) -> tuple[int, int | str]:
    # Numeric ids sort numerically (landmark ids), anything else as text after them.
    return (0, int(class_id)) if class_id.lstrip("-").isdigit() else (1, class_id)


def labelled_from_pairs(
    pairs: Sequence[tuple[str, str]], class_names: Sequence[str] | None = None
) -> LabelledSet:
    """Map class ids to 0..C-1. Ids that are already exactly 0..C-1 keep their value (the
    official GLDv2 lists); others are numbered in sorted order. With `class_names` (a training
    set's names) the same mapping is used and unknown ids are an error (for a val list)."""
    if class_names is None:
        ids = sorted({c for _, c in pairs}, key=_sort_key)
        class_names = [str(i) for i in ids]
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({c for _, c in pairs if c not in index}, key=_sort_key)
    if unknown:
        raise DataError(
            f"{len(unknown)} class ids are not in the training classes, e.g. {unknown[:5]}"
        )
    return LabelledSet([Sample(p, index[c]) for p, c in pairs], list(class_names))


def scan_class_folders(root: str | Path) -> LabelledSet:
    """`root/<class>/**/<image>`: one class per sub-folder (sorted by name), images found
    recursively (sorted), paths relative to root."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        files = sorted(
            f
            for f in (root / name).rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        samples.extend(Sample(f.relative_to(root).as_posix(), label) for f in files)
    if not samples:
        raise DataError(f"{root}: no images in class sub-folders")
    return LabelledSet(samples, classes)


def split_train_val(
    samples: Sequence[Sample], val_fraction: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic per-class split: round(val_fraction * n) samples of each class go to val,
    but every class keeps at least one training sample. Within a class the samples are ordered
    by sha1(seed, path), so the result does not depend on the input order. Both outputs keep
    the input order."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(i)
    val: set[int] = set()
    for members in by_class.values():
        k = min(math.floor(val_fraction * len(members) + 0.5), len(members) - 1)
        if k > 0:
            # Ties (a path listed twice) fall back to the list position.
            ordered = sorted(members, key=lambda i: (_hash_key(seed, samples[i].path), i))
            val.update(ordered[:k])
    train = [s for i, s in enumerate(samples) if i not in val]
    return train, [s for i, s in enumerate(samples) if i in val]


def _hash_key(seed: int, path: str) -> bytes:
    return hashlib.sha1(f"{seed}\0{path}".encode()).digest()


@dataclass(frozen=True)
class RetrievalSet:
    """Held-out images for the retrieval figure: queries and gallery, with instance ids."""

    root: Path
    queries: list[tuple[str, str]]  # (relative path, instance id)
    gallery: list[tuple[str, str]]


def read_retrieval_list(list_path: str | Path, root: str | Path | None = None) -> RetrievalSet:
    """`<relative_path> <instance_id> <query|gallery>` lines; paths relative to `root` (default:
    the list's folder). Every query needs at least one gallery image of its instance."""
    list_path = Path(list_path)
    queries: list[tuple[str, str]] = []
    gallery: list[tuple[str, str]] = []
    with list_path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            path, instance, role = _split_line(line, 3, f"{list_path.name}:{number}")
            if role not in ("query", "gallery"):
                raise DataError(f"{list_path.name}:{number}: role must be query or gallery")
            (queries if role == "query" else gallery).append((path, instance))
    known = {i for _, i in gallery}
    orphans = sorted({i for _, i in queries if i not in known})
    if not queries or not gallery or orphans:
        raise DataError(
            f"{list_path.name}: needs queries and gallery images, and a gallery image for every "
            f"query instance ({len(queries)} queries, {len(gallery)} gallery, instances without "
            f"gallery: {orphans[:5]})"
        )
    return RetrievalSet(Path(root) if root is not None else list_path.parent, queries, gallery)


# --------------------------------------------------------------------------------- datasets

Transform = Callable[[np.ndarray, np.random.Generator], Tensor]
Key = int | tuple[int, int]


class ImageDataset(Dataset[tuple[Tensor, int]]):
    """root + samples -> (transform(image, rng) [3,S,S], label).

    A key is an index or (index, epoch); the augmentation RNG is seeded from
    (seed, epoch, index), which makes every sample's augmentation reproducible.
    """

    def __init__(
        self, root: str | Path, samples: Sequence[Sample], transform: Transform, seed: int = 0
    ) -> None:
        self.root = Path(root)
        self.samples = list(samples)
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Key) -> tuple[Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        path = self.root / sample.path
        try:
            img = load_rgb(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read training image {sample.path}: {exc}") from exc
        rng = np.random.default_rng((self.seed, epoch, index))
        return self.transform(img, rng), sample.label


# --------------------------------------------------------------------------------- sampling


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Micro-batches of (index, epoch) keys for one rank, resumable mid-epoch.

    Wraps DistributedSampler (shuffled with seed + epoch, padded so every rank gets the same
    number of indices). Only whole groups of `group` micro-batches are produced (`group` = the
    gradient-accumulation steps), so every rank runs the same number of optimiser steps and no
    step mixes epochs. `start` skips that many micro-batches (the ones a resumed run already
    trained on); it applies to the next epoch iterated and is then reset.
    """

    def __init__(
        self,
        num_samples: int,
        micro_batch: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        group: int = 1,
    ) -> None:
        # DistributedSampler only takes len() of its dataset: the indices 0..n-1 stand in for it.
        indices = cast("Dataset[int]", range(num_samples))
        self.sampler: DistributedSampler[int] = DistributedSampler(
            indices, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self.micro_batch = micro_batch
        self.group = group
        self.epoch = 0
        self.start = 0
        self.batches_per_epoch = (len(self.sampler) // micro_batch) // group * group
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{num_samples} training samples give no full step: each step needs "
                f"{micro_batch} x {group} (micro-batch x accumulation) per process x "
                f"{world_size} processes"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def set_start(self, micro_batches: int) -> None:
        if not 0 <= micro_batches <= self.batches_per_epoch:
            raise ValueError(f"start {micro_batches} outside 0..{self.batches_per_epoch}")
        self.start = micro_batches

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = list(self.sampler)
        start, self.start = self.start, 0
        mb = self.micro_batch
        for b in range(start, self.batches_per_epoch):
            yield [(i, self.epoch) for i in indices[b * mb : (b + 1) * mb]]


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ...: an evaluation shard without padding or duplicates."""

    def __init__(self, num_samples: int, world_size: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, num_samples, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def make_loader(
    dataset: Dataset[Any],
    *,
    batch_sampler: Sampler[Any] | None = None,
    sampler: Sampler[int] | None = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
    persistent_workers: bool = True,
) -> DataLoader[Any]:
    """A DataLoader that keeps its workers between epochs and prefetches `prefetch_factor`
    batches per worker (decode + augmentation run there; each worker uses one torch thread)."""
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers}
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            **extra,
        )
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        **extra,
    )


def class_counts(samples: Sequence[Sample], num_classes: int) -> np.ndarray:
    """Samples per class [C] (int64)."""
    return np.bincount(
        np.asarray([s.label for s in samples], dtype=np.int64), minlength=num_classes
    )
