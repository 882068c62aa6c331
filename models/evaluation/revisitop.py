"""Revisited Oxford/Paris dataset reader (stdlib + numpy; images are decoded elsewhere).

Layout (docs/ALGORITHMS.md 5.1), as revisitop's own download scripts create it:

    <root>/<dataset>/gnd_<dataset>.pkl         imlist, qimlist, gnd (bbx, easy, hard, junk)
    <root>/<dataset>/jpg/<stem>.jpg            database and query images
    <root>/revisitop1m/revisitop1m.txt         optional +1M distractors, one file name a line
    <root>/revisitop1m/jpg/<line>              (".jpg" appended when the line has no extension)

Queries are not in the database. Distractors are appended after the database, so their indices
are >= n_db and never appear in any ok/junk list: rankings over db + distractors evaluate with
the same ground truth unchanged.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.metrics import Setup, protocol_gnd

logger = logging.getLogger(__name__)

DATASETS = ("roxford5k", "rparis6k")
IMAGE_EXT = ".jpg"

# Globals a gnd pickle may legitimately reference: the shipped files hold plain lists, older
# conversions (cirtorch) hold numpy arrays. Anything else is refused instead of executed.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class _GndUnpickler(pickle.Unpickler):
    """Unpickler restricted to builtins containers and numpy arrays (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"gnd pickle references forbidden global {module}.{name}")


def load_gnd(path: str | Path) -> dict[str, Any]:
    """Load a revisitop gnd pickle: {'imlist': [str], 'qimlist': [str], 'gnd': [dict]}.

    Each gnd entry has 'bbx' [x1, y1, x2, y2] (0-based, floats in ROxf, ints in RPar) and
    'easy', 'hard', 'junk' lists of indices into imlist.
    """
    data = Path(path).read_bytes()
    gnd = _GndUnpickler(io.BytesIO(data)).load()
    if not isinstance(gnd, dict) or not {"imlist", "qimlist", "gnd"} <= gnd.keys():
        raise ValueError(f"{path}: not a revisitop gnd pickle (need imlist, qimlist, gnd)")
    if len(gnd["gnd"]) != len(gnd["qimlist"]):
        raise ValueError(f"{path}: {len(gnd['gnd'])} gnd entries for {len(gnd['qimlist'])} queries")
    return gnd


def query_crop_box(bbx: Sequence[float]) -> tuple[int, int, int, int]:
    """Query crop box (x1, y1, x2, y2) with int() truncation and exclusive end (spec 5.4).

    Matches DOLG/CVNet/SuperGlobal/CFCD (`im[int(y1):int(y2), int(x1):int(x2)]`), which the
    published numbers use; PIL's crop (revisitop python) rounds instead, a <= 1 px difference.
    Usable as PIL `Image.crop(box)` or as numpy slices [y1:y2, x1:x2].
    """
    if len(bbx) != 4:
        raise ValueError(f"bbx must be [x1, y1, x2, y2], got {bbx!r}")
    x1, y1, x2, y2 = (int(v) for v in bbx)
    return x1, y1, x2, y2


def read_image_list(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a list file such as revisitop1m.txt."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class RevisitopDataset:
    """Paths and ground truth of one revisited dataset, optionally with +1M distractors.

    root: folder holding `<name>/gnd_<name>.pkl` and `<name>/jpg/`.
    name: 'roxford5k' or 'rparis6k' (any name with that layout works).
    distractors: path of `revisitop1m.txt`; the images are read from `jpg/` next to it.
    """

    def __init__(self, root: str | Path, name: str, distractors: str | Path | None = None):
        self.root = Path(root)
        self.name = name
        self.dir_data = self.root / name
        self.dir_images = self.dir_data / "jpg"
        self.gnd_path = self.dir_data / f"gnd_{name}.pkl"
        cfg = load_gnd(self.gnd_path)
        self.imlist: list[str] = list(cfg["imlist"])
        self.qimlist: list[str] = list(cfg["qimlist"])
        self.gnd: list[dict[str, Any]] = list(cfg["gnd"])

        self.distractor_list: list[str] = []
        self.dir_distractors: Path | None = None
        if distractors is not None:
            distractors = Path(distractors)
            self.distractor_list = read_image_list(distractors)
            self.dir_distractors = distractors.parent / "jpg"
            logger.info(
                "%s: %d db images + %d distractors from %s",
                name,
                len(self.imlist),
                len(self.distractor_list),
                distractors,
            )

    @property
    def n_db(self) -> int:
        """Database size without distractors; distractor indices start here."""
        return len(self.imlist)

    @property
    def n_distractors(self) -> int:
        return len(self.distractor_list)

    @property
    def n_queries(self) -> int:
        return len(self.qimlist)

    def __len__(self) -> int:
        """Number of images to index: database followed by distractors."""
        return self.n_db + self.n_distractors

    def db_paths(self) -> list[Path]:
        """Image paths in index order: [n_db database images] ++ [distractors]."""
        paths = [self.dir_images / f"{stem}{IMAGE_EXT}" for stem in self.imlist]
        if self.dir_distractors is not None:
            paths.extend(self.dir_distractors / _with_ext(n) for n in self.distractor_list)
        return paths

    def query_paths(self) -> list[Path]:
        return [self.dir_images / f"{stem}{IMAGE_EXT}" for stem in self.qimlist]

    def query_bboxes(self) -> list[tuple[float, float, float, float]]:
        """Raw query boxes [x1, y1, x2, y2] as stored (floats for ROxf, ints for RPar)."""
        return [tuple(g["bbx"]) for g in self.gnd]

    def query_crop_boxes(self) -> list[tuple[int, int, int, int]]:
        """Query boxes truncated with int(), see `query_crop_box`."""
        return [query_crop_box(g["bbx"]) for g in self.gnd]

    def protocol_gnd(self, setup: Setup) -> list[dict[str, np.ndarray]]:
        """ok/junk index sets of one setup ('easy' | 'medium' | 'hard')."""
        return protocol_gnd(self.gnd, setup)


def _with_ext(name: str) -> str:
    """revisitop1m.txt lines may omit the extension (revisitop's MATLAB reader adds .jpg)."""
    return name if Path(name).suffix else name + IMAGE_EXT
