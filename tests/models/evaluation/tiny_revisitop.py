"""A tiny dataset in the revisitop layout, built from the real photos in ../shared/data/photos.

Per group (one source photo): the database holds the photo itself and a colour-jittered copy
(easy), an off-centre crop (hard) and a mirrored copy (junk); the query is the photo pasted
into a larger canvas whose box `bbx` (floats) truncates with int() exactly onto the paste, so
a protocol-compliant crop recovers the photo. Further photos are plain negatives. Everything
is downscaled to a small long side so that R50 runs fast on two CPU cores.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from app.inference.preprocess import IMAGE_SUFFIXES

PHOTOS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "photos"


@dataclass
class TinyDataset:
    root: Path
    name: str
    gnd: dict
    n_groups: int


def _photo_paths(photos: Path) -> list[Path]:
    return sorted(p for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _small(path: Path, side: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def build_tiny_revisitop(
    root: Path,
    photos: Path = PHOTOS,
    name: str = "roxford5k",
    n_groups: int = 4,
    n_negatives: int = 4,
    side: int = 96,
    seed: int = 0,
) -> TinyDataset:
    """Write <root>/<name>/jpg/*.jpg and <root>/<name>/gnd_<name>.pkl; return the gnd dict."""
    paths = _photo_paths(photos)
    if len(paths) < n_groups + n_negatives:
        raise ValueError(f"need {n_groups + n_negatives} photos in {photos}, found {len(paths)}")
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in rng.permutation(len(paths))[: n_groups + n_negatives]]
    jpg = root / name / "jpg"
    jpg.mkdir(parents=True, exist_ok=True)

    db: list[tuple[str, Image.Image]] = []
    roles: list[dict[str, list[str]]] = []
    queries: list[tuple[str, Image.Image, list[float]]] = []
    for g, path in enumerate(chosen[:n_groups]):
        img = _small(path, side)
        w, h = img.size
        colour = ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.15)).enhance(1.3)
        crop = img.crop((int(0.15 * w), int(0.1 * h), w, h))
        db += [(f"g{g}_orig", img), (f"g{g}_colour", colour), (f"g{g}_crop", crop),
               (f"g{g}_flip", ImageOps.mirror(img))]
        roles.append({"easy": [f"g{g}_orig", f"g{g}_colour"], "hard": [f"g{g}_crop"],
                      "junk": [f"g{g}_flip"]})
        # Canvas 1.4x the photo, filled with noise; paste at an integer offset.
        canvas_size = (int(w * 1.4), int(h * 1.4))
        noise = rng.integers(0, 256, (canvas_size[1], canvas_size[0], 3), dtype=np.uint8)
        canvas = Image.fromarray(noise)
        x0, y0 = int(rng.integers(1, canvas_size[0] - w)), int(rng.integers(1, canvas_size[1] - h))
        canvas.paste(img, (x0, y0))
        # Fractional parts that int() truncates away: the crop is exactly the pasted photo.
        bbx = [x0 + 0.7, y0 + 0.2, x0 + w + 0.9, y0 + h + 0.5]
        queries.append((f"q{g}", canvas, bbx))
    for n, path in enumerate(chosen[n_groups:]):
        db.append((f"neg{n}", _small(path, side)))

    order = rng.permutation(len(db))  # positives spread over the index range
    imlist = [db[i][0] for i in order]
    index = {stem: i for i, stem in enumerate(imlist)}
    for stem, img in db:
        img.save(jpg / f"{stem}.jpg", quality=95)
    gnd_entries = []
    for (stem, canvas, bbx), role in zip(queries, roles, strict=True):
        canvas.save(jpg / f"{stem}.jpg", quality=95)
        gnd_entries.append({"bbx": bbx, **{k: [index[s] for s in v] for k, v in role.items()}})
    gnd = {"imlist": imlist, "qimlist": [q[0] for q in queries], "gnd": gnd_entries}
    with open(root / name / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump(gnd, f)
    return TinyDataset(root, name, gnd, n_groups)


# --------------------------------------------------------------------------- models / workbench

REPO = Path(__file__).resolve().parents[3]


def load_script(name: str):  # -> ModuleType
    """The tool module workbench/<name>.py (export, evaluate)."""
    import importlib

    return importlib.import_module(f"workbench.{name}")


def save_tiny_checkpoint(path: Path, photos: list[Path], architecture: str = "dolg",
                         seed: int = 0, side: int = 96) -> Path:
    """A random-init R50 (DOLG or ResNet-pooling) with BN statistics estimated on a few small
    photos, saved as our self-describing checkpoint."""
    import torch

    from models.calibrate import calibrate_batchnorm
    from models.checkpoint import save_checkpoint
    from models.dolg import DOLGConfig
    from models.factory import build_model

    torch.manual_seed(seed)
    model = build_model(DOLGConfig(depth=50, architecture=architecture))  # type: ignore[arg-type]
    mean = np.array([0.406, 0.456, 0.485], np.float32)[:, None, None]
    std = np.array([0.225, 0.224, 0.229], np.float32)[:, None, None]
    batches = []
    for p in photos:
        rgb = np.asarray(_small(p, side), dtype=np.float32) / 255.0
        bgr = rgb[:, :, ::-1].transpose(2, 0, 1)
        batches.append(torch.from_numpy(((bgr - mean) / std).astype(np.float32))[None])
    calibrate_batchnorm(model, batches)
    return save_checkpoint(path, model.eval())
