"""Dataset reader: gnd loading, paths, query boxes, +1M distractors."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.metrics import evaluate_revisitop
from models.evaluation.revisitop import RevisitopDataset, load_gnd, query_crop_box

GND_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "revisitop"


def make_dataset(root: Path, name: str = "toy5") -> dict:
    """A tiny dataset in the revisitop layout: 6 db images, 2 queries."""
    cfg = {
        "imlist": [f"db_{i}" for i in range(6)],
        "qimlist": ["q_0", "q_1"],
        "gnd": [
            {"bbx": [10.7, 5.2, 100.9, 80.5], "easy": [0, 1], "hard": [2], "junk": [3]},
            {"bbx": [0, 0, 50, 40], "easy": [], "hard": [4], "junk": [5]},
        ],
    }
    (root / name / "jpg").mkdir(parents=True)
    with open(root / name / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump(cfg, f)
    return cfg


def test_paths_and_boxes(tmp_path):
    cfg = make_dataset(tmp_path)
    ds = RevisitopDataset(tmp_path, "toy5")
    assert ds.n_db == len(ds) == 6 and ds.n_queries == 2 and ds.n_distractors == 0
    assert ds.db_paths()[0] == tmp_path / "toy5" / "jpg" / "db_0.jpg"
    assert ds.query_paths() == [
        tmp_path / "toy5" / "jpg" / "q_0.jpg",
        tmp_path / "toy5" / "jpg" / "q_1.jpg",
    ]
    assert ds.query_bboxes()[0] == (10.7, 5.2, 100.9, 80.5)
    assert ds.query_crop_boxes() == [(10, 5, 100, 80), (0, 0, 50, 40)]
    assert ds.protocol_gnd("medium")[0]["ok"].tolist() == [0, 1, 2]
    assert ds.gnd == cfg["gnd"]


def test_query_crop_box_truncates():
    # int() truncation with exclusive end (DOLG/CVNet/SuperGlobal), not PIL's rounding.
    assert query_crop_box([136.5, 34.1, 648.5, 955.7]) == (136, 34, 648, 955)
    assert query_crop_box([130, 17, 843, 732]) == (130, 17, 843, 732)
    assert query_crop_box(np.array([1.99, 2.5, 3.01, 4.0])) == (1, 2, 3, 4)
    with pytest.raises(ValueError):
        query_crop_box([1, 2, 3])


def test_distractors_appended_after_db_and_never_positive(tmp_path):
    make_dataset(tmp_path)
    list_file = tmp_path / "revisitop1m" / "revisitop1m.txt"
    list_file.parent.mkdir()
    list_file.write_text("a/b/0001.jpg\nc/d/0002\n\n")
    ds = RevisitopDataset(tmp_path, "toy5", distractors=list_file)
    assert ds.n_db == 6 and ds.n_distractors == 2 and len(ds) == 8
    paths = ds.db_paths()
    assert paths[6] == tmp_path / "revisitop1m" / "jpg" / "a" / "b" / "0001.jpg"
    assert paths[7] == tmp_path / "revisitop1m" / "jpg" / "c" / "d" / "0002.jpg"  # .jpg added

    # Distractors (6, 7) ranked last: perfect. Ranked first: they count as negatives.
    good = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [4, 5, 0, 1, 2, 3, 6, 7]]).T  # [8, 2]
    bad = np.array([[6, 7, 0, 1, 2, 3, 4, 5], [6, 7, 4, 5, 0, 1, 2, 3]]).T
    assert evaluate_revisitop(good, ds.gnd)["mAP"]["medium"] == 100.0
    assert evaluate_revisitop(bad, ds.gnd)["mAP"]["medium"] < 50.0


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_load_gnd_refuses_code_and_accepts_numpy(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [], "x": _Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        load_gnd(evil)

    # Older conversions store numpy arrays; those stay readable.
    ok = tmp_path / "np.pkl"
    buf = io.BytesIO()
    pickle.dump(
        {
            "imlist": ["a"],
            "qimlist": ["q"],
            "gnd": [
                {
                    "bbx": np.array([1.5, 2.0, 3.0, 4.0]),
                    "easy": np.array([0]),
                    "hard": np.array([], dtype=np.int64),
                    "junk": np.array([]),
                }
            ],
        },
        buf,
    )
    ok.write_bytes(buf.getvalue())
    cfg = load_gnd(ok)
    assert cfg["gnd"][0]["easy"].tolist() == [0]
    assert query_crop_box(cfg["gnd"][0]["bbx"]) == (1, 2, 3, 4)

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"imlist": [], "gnd": []}))
    with pytest.raises(ValueError):
        load_gnd(bad)


@pytest.mark.parametrize(("name", "n_db"), [("roxford5k", 4993), ("rparis6k", 6322)])
def test_load_real_gnd(name, n_db):
    path = GND_DIR / f"gnd_{name}.pkl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    cfg = load_gnd(path)
    assert len(cfg["imlist"]) == n_db and len(cfg["qimlist"]) == 70
    assert not set(cfg["qimlist"]) & set(cfg["imlist"])  # queries are not in the db
    boxes = [query_crop_box(g["bbx"]) for g in cfg["gnd"]]
    assert all(x1 < x2 and y1 < y2 for x1, y1, x2, y2 in boxes)


def test_dataset_on_real_gnd_layout(tmp_path):
    src = GND_DIR / "gnd_roxford5k.pkl"
    if not src.exists():
        pytest.skip(f"{src} not available")
    (tmp_path / "roxford5k").mkdir()
    (tmp_path / "roxford5k" / "gnd_roxford5k.pkl").write_bytes(src.read_bytes())
    ds = RevisitopDataset(tmp_path, "roxford5k")
    assert len(ds.db_paths()) == 4993 and len(ds.query_paths()) == 70
    assert ds.query_paths()[0].name == "all_souls_000013.jpg"
    assert ds.query_crop_boxes()[0] == (136, 34, 648, 955)
