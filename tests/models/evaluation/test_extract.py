"""Extraction loop, feature cache, rankings, and equality with the official cv2 extraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.extract import FeatureCache, clip_box, extract_features, list_digest
from models.evaluation.metrics import evaluate_revisitop
from models.evaluation.ranking import MISSING, exact_ranks, pad_ranks, rerank_head
from tests.models.evaluation.tiny_revisitop import PHOTOS, build_tiny_revisitop

# ------------------------------------------------------------------------------ extraction loop


def test_clip_box() -> None:
    assert clip_box((10.5, 2.2, 50.9, 40.1), 100, 80) == (10.5, 2.2, 50.9, 40.1)
    # Past the border: clipped like numpy slicing clips im[y1:y2, x1:x2] in the official code.
    assert clip_box((-3, 5, 120.5, 81), 100, 80) == (0.0, 5.0, 100.0, 80.0)


@pytest.mark.parametrize("workers", [0, 2])
def test_extract_features_keeps_order_and_passes_boxes(workers: int) -> None:
    paths = [Path(f"img{i}.jpg") for i in range(7)]
    boxes = [None, (0, 0, 5, 5), None, None, (1, 1, 2, 2), None, None]
    seen: list[tuple[str, object]] = []

    def prepare(path: Path, box):  # -> per-scale inputs; here one fake "scale" holding the id
        seen.append((path.name, box))
        return [np.full((3, 2, 2), float(path.stem[3:]), np.float32)]

    def embed(inputs):  # [D] = one-hot of the image id
        vec = np.zeros(8, np.float32)
        vec[int(inputs[0][0, 0, 0])] = 1.0
        return vec

    out = extract_features(paths, prepare, embed, boxes, workers=workers, log_every=3)
    assert out.shape == (7, 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(axis=1), np.arange(7))
    assert sorted(seen) == sorted((p.name, b) for p, b in zip(paths, boxes, strict=True))


def test_extract_features_names_the_failing_image() -> None:
    def prepare(path: Path, box):
        if path.name == "bad.jpg":
            raise ValueError("truncated file")
        return [np.zeros((3, 2, 2), np.float32)]

    with pytest.raises(RuntimeError, match=r"bad\.jpg: truncated file"):
        extract_features([Path("ok.jpg"), Path("bad.jpg"), Path("ok2.jpg")], prepare,
                         lambda inputs: np.ones(4, np.float32), workers=2)
    with pytest.raises(RuntimeError, match="non-finite"):
        extract_features([Path("ok.jpg")], prepare,
                         lambda inputs: np.full(4, np.nan, np.float32), workers=0)


# ------------------------------------------------------------------------------ feature cache


def test_feature_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    description = {"model": {"onnx_sha256": "ab" * 32}, "dataset": "roxford5k", "part": "db",
                   "preprocessing": {"scales": [0.3535, 0.5, 0.7071, 1.0, 1.4142]},
                   "images": {"count": 3, "sha256": list_digest(["a", "b", "c"])}}
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(12, dtype=np.float32).reshape(3, 4)

    first, cached = cache.get_or_compute("roxford5k-db", description, 3, compute)
    assert not cached and len(calls) == 1
    again, cached = cache.get_or_compute("roxford5k-db", description, 3, compute)
    assert cached and len(calls) == 1
    np.testing.assert_array_equal(first, again)
    npy, meta = cache.paths("roxford5k-db", description)
    stored = json.loads(meta.read_text())
    assert stored["description"] == description and (stored["rows"], stored["dim"]) == (3, 4)
    assert sorted(p.name for p in npy.parent.iterdir()) == sorted([npy.name, meta.name])
    # Another scale list is another key: extracted again, the old file untouched.
    other = {**description, "preprocessing": {"scales": [0.7071, 1.0, 1.4142]}}
    assert FeatureCache.key(other) != FeatureCache.key(description)
    _, cached = cache.get_or_compute("roxford5k-db", other, 3, compute)
    assert not cached and len(calls) == 2
    # A description that no longer matches its file (or a row count) is ignored, not trusted.
    stored["description"]["dataset"] = "edited"
    meta.write_text(json.dumps(stored))
    assert cache.load("roxford5k-db", description, 3) is None
    # No directory: nothing stored, always computed.
    _, cached = FeatureCache(None).get_or_compute("x", description, 3, compute)
    assert not cached and len(calls) == 3


def test_feature_cache_rejects_wrong_row_count(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.save("q", {"k": 1}, np.ones((2, 3), np.float32))
    assert cache.load("q", {"k": 1}, 2) is not None
    assert cache.load("q", {"k": 1}, 5) is None
    with pytest.raises(RuntimeError, match="expected 4"):
        cache.get_or_compute("q2", {"k": 1}, 4, lambda: np.ones((2, 3), np.float32))


# ------------------------------------------------------------------------------ rankings


def test_exact_ranks_full_and_stable() -> None:
    rng = np.random.default_rng(0)
    db = rng.standard_normal((50, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    db[7] = db[3]  # a tie: the lower index must come first
    queries = np.stack([db[3], rng.standard_normal(8).astype(np.float32), -db[10]])
    ranks = exact_ranks(db, queries, chunk=2)
    assert ranks.shape == (50, 3) and ranks.dtype == np.int64
    for q in range(3):
        assert sorted(ranks[:, q].tolist()) == list(range(50))
        scores = db[ranks[:, q]] @ queries[q]
        assert np.all(np.diff(scores) <= 1e-6)
    assert ranks[:2, 0].tolist() == [3, 7]
    assert ranks[-1, 2] == 10


def test_rerank_head_and_pad() -> None:
    ranks = np.array([[5, 1], [6, 2], [7, 3], [8, 4]])
    out = rerank_head(ranks, np.array([[1, 0], [0, 1]]))  # M = 2
    assert out.tolist() == [[6, 1], [5, 2], [7, 3], [8, 4]]
    assert ranks.tolist() == [[5, 1], [6, 2], [7, 3], [8, 4]]  # input untouched
    with pytest.raises(ValueError):
        rerank_head(ranks, np.zeros((3, 2), np.int64))
    padded = pad_ranks([[4, 2, 9], [1]], 4)
    assert padded.tolist() == [[4, 1], [2, MISSING], [9, MISSING], [MISSING, MISSING]]
    # MISSING entries are neither positive nor junk: a truncated list just loses recall.
    gnd = [{"easy": [4], "hard": [], "junk": []}, {"easy": [1, 3], "hard": [], "junk": []}]
    res = evaluate_revisitop(padded, gnd)
    assert res["mAP"]["easy"] == 75.0  # (1.0 + 0.5) / 2: query 1 misses one of 2 positives


# ------------------------------------------------------------------------------ official chain


@pytest.mark.torch
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data/photos is not available")
def test_extraction_equals_official_cv2_chain(tmp_path: Path) -> None:
    """Our extraction (service preprocessing + torch runner + service pooling) equals the
    official DOLG evaler (cv2.imread BGR, int() crop of the original image, cv2.resize
    INTER_LINEAR to round(w*s) x round(h*s), /255, BGR mean/std, l2n per scale, mean, l2n),
    written here from docs/ALGORITHMS.md 1.7, for a database image and a cropped query."""
    cv2 = pytest.importorskip("cv2")
    import torch

    from models.calibrate import calibrate_batchnorm
    from models.dolg import DOLG, DOLGConfig
    from models.evaluation.extract import TorchRunner
    from models.layers.functional import l2n
    from workbench.evaluation.extraction import make_embed, make_prepare

    ds = build_tiny_revisitop(tmp_path, n_groups=1, n_negatives=0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = DOLG(DOLGConfig(depth=50)).eval()
        calibrate_batchnorm(model, [torch.randn(1, 3, 64, 64)])

        from app.artifacts import Preprocessing

        prep = Preprocessing()  # the official 5 scales, BGR mean/std, mean pooling
        prepare = make_prepare(prep)
        embed = make_embed(TorchRunner(model), prep)
        mean = np.array([0.406, 0.456, 0.485], np.float32)
        std = np.array([0.225, 0.224, 0.229], np.float32)

        def official(path: Path, bbx) -> np.ndarray:
            im = cv2.imread(str(path))  # uint8 BGR
            if bbx is not None:
                x1, y1, x2, y2 = map(int, bbx)
                im = im[y1:y2, x1:x2]
            im = im.astype(np.float32)
            total = 0.0
            for s in prep.scales:
                h, w = im.shape[:2]
                # process.py: int(round(h * s)), int(round(w * s)) (Python 3 round: an int)
                scaled = cv2.resize(im, (round(w * s), round(h * s)),
                                    interpolation=cv2.INTER_LINEAR)
                x = (scaled.transpose(2, 0, 1) / 255.0 - mean[:, None, None]) / std[:, None, None]
                with torch.no_grad():
                    out = l2n(model(torch.from_numpy(x.astype(np.float32))[None]), dim=1)
                total = total + out.numpy()[0]
            pooled = total / len(prep.scales)
            return pooled / np.linalg.norm(pooled)

        jpg = ds.root / ds.name / "jpg"
        cases = [(jpg / f"{ds.gnd['imlist'][0]}.jpg", None),
                 (jpg / "q0.jpg", ds.gnd["gnd"][0]["bbx"])]
        for path, bbx in cases:
            ours = embed(prepare(path, tuple(bbx) if bbx else None))
            assert float(ours @ official(path, bbx)) >= 0.9999, path.name
    finally:
        torch.set_num_threads(before)
