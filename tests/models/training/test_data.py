"""Lists, folder trees, the deterministic split, the resumable sampler, the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.training.data import (
    DataError,
    EpochBatchSampler,
    ImageDataset,
    Sample,
    labelled_from_pairs,
    read_image_list,
    read_retrieval_list,
    scan_class_folders,
    split_train_val,
)
from models.training.transforms import TrainTransform
from tests.models.training.toy import write_class_folders

pytestmark = pytest.mark.torch


def test_gldv2_list_reading_and_label_mapping(tmp_path: Path) -> None:
    listing = tmp_path / "train_list.txt"
    listing.write_text("# comment\na/1.jpg 2\n\nb dir/2.jpg 0\nc/3.jpg 1\n", encoding="utf-8")
    pairs = read_image_list(listing)
    assert pairs == [("a/1.jpg", "2"), ("b dir/2.jpg", "0"), ("c/3.jpg", "1")]
    same = labelled_from_pairs(pairs)  # ids already 0..C-1 keep their value
    assert [s.label for s in same.samples] == [2, 0, 1] and same.class_names == ["0", "1", "2"]
    raw = labelled_from_pairs([("x", "138982"), ("y", "7"), ("z", "138982")])
    assert [s.label for s in raw.samples] == [1, 0, 1] and raw.class_names == ["7", "138982"]
    with pytest.raises(DataError, match="not in the training classes"):
        labelled_from_pairs([("q", "5")], raw.class_names)
    bad = tmp_path / "bad.txt"
    bad.write_text("only_a_path\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt:1"):
        read_image_list(bad)


def test_class_folders(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "toy", classes=3, per_class=2)
    (root / "c1" / "notes.txt").write_text("not an image")
    data = scan_class_folders(root)
    assert data.class_names == ["c0", "c1", "c2"]
    assert [(s.path, s.label) for s in data.samples][:3] == [("c0/0.png", 0), ("c0/1.png", 0),
                                                             ("c1/0.png", 1)]
    assert len(data.samples) == 6


def test_split_is_deterministic_per_class_and_order_free() -> None:
    samples = [Sample(f"c{k}/{i}.jpg", k) for k in range(3) for i in range(10)]
    samples.append(Sample("lonely/0.jpg", 3))
    train, val = split_train_val(samples, 0.2, seed=1)
    assert len(val) == 6 and all(sum(s.label == k for s in val) == 2 for k in range(3))
    assert Sample("lonely/0.jpg", 3) in train  # a class keeps at least one training image
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(samples)
    shuffled = [samples[i] for i in np.random.default_rng(0).permutation(len(samples))]
    train2, val2 = split_train_val(shuffled, 0.2, seed=1)
    assert set(val2) == set(val) and set(train2) == set(train)
    _, val3 = split_train_val(samples, 0.2, seed=2)
    assert set(val3) != set(val)
    # The same path listed several times (repeated originals) never empties a class.
    repeated = [Sample("p.jpg", 0)] * 5
    train4, val4 = split_train_val(repeated, 0.4)
    assert len(train4) == 3 and len(val4) == 2


def test_epoch_batch_sampler_shards_resumes_and_tags_epochs() -> None:
    make = lambda rank: EpochBatchSampler(  # noqa: E731
        22, micro_batch=3, world_size=2, rank=rank, seed=5, group=2
    )
    r0, r1 = make(0), make(1)
    # 11 indices per rank -> 3 micro-batches of 3 -> 2 whole groups of 2 = 2 micro-batches.
    assert len(r0) == 2 and r0.batches_per_epoch == 2
    r0.set_epoch(3)
    r1.set_epoch(3)
    b0, b1 = list(r0), list(r1)
    assert all(e == 3 for batch in b0 + b1 for _, e in batch)
    i0 = {i for batch in b0 for i, _ in batch}
    i1 = {i for batch in b1 for i, _ in batch}
    assert i0.isdisjoint(i1) and len(i0) == len(i1) == 6
    assert list(r0) == b0  # the order is a function of (seed, epoch)
    r0.set_epoch(4)
    assert list(r0) != b0
    r0.set_epoch(3)
    r0.set_start(1)
    assert len(r0) == 1 and list(r0) == b0[1:]
    assert list(r0) == b0  # the skip applies to one pass only
    with pytest.raises(DataError, match="no full step"):
        EpochBatchSampler(5, micro_batch=4, world_size=2)


def test_dataset_augmentation_is_a_function_of_seed_epoch_index(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "toy", classes=2, per_class=2)
    data = scan_class_folders(root)
    ds = ImageDataset(root, data.samples, TrainTransform(size=16), seed=3)
    a, label = ds[(1, 0)]
    assert a.shape == (3, 16, 16) and label == 0
    assert torch.equal(ds[(1, 0)][0], a)
    assert not torch.equal(ds[(1, 1)][0], a)
    assert not torch.equal(ImageDataset(root, data.samples, TrainTransform(size=16), 4)[(1, 0)][0],
                           a)


def test_retrieval_list(tmp_path: Path) -> None:
    listing = tmp_path / "retrieval_list.txt"
    listing.write_text("g/a.jpg a gallery\nq/a1.jpg a query\ng/b.jpg b gallery\n")
    rs = read_retrieval_list(listing)
    assert rs.root == tmp_path and rs.queries == [("q/a1.jpg", "a")] and len(rs.gallery) == 2
    listing.write_text("g/a.jpg a gallery\nq/c.jpg c query\n")
    with pytest.raises(DataError, match="gallery image for every"):
        read_retrieval_list(listing)
