"""Tiny image sets for the training tests (written with Pillow, a few KB each)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# Well separated colours: one per class makes a trivially separable set.
COLOURS = ((220, 30, 30), (30, 40, 220), (40, 200, 40), (230, 230, 40))


def write_class_folders(
    root: Path, classes: int = 2, per_class: int = 4, size: tuple[int, int] = (48, 40),
    seed: int = 0,
) -> Path:
    """root/c<k>/<i>.png: noisy flat colours, class k in COLOURS[k]; returns root."""
    rng = np.random.default_rng(seed)
    width, height = size
    for k in range(classes):
        folder = root / f"c{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0.0, 20.0, (height, width, 3))
            pixels = np.clip(np.asarray(COLOURS[k])[None, None, :] + noise, 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def write_photos(folder: Path, count: int, seed: int = 0) -> Path:
    """Small 'photos' with structure (gradients + blocks), different per index."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = 56 + 4 * i, 72 - 2 * i
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * (3 + i)) % 256, (y * (5 + 2 * i)) % 256, ((x + y) * 7) % 256], -1)
        base = base + rng.integers(0, 40, (h, w, 3))
        bx, by = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        base[by : by + h // 3, bx : bx + w // 3] = rng.integers(0, 256, 3)
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"photo{i}.jpg",
                                                                       quality=92)
    return folder


def write_photo_classes(root: Path, classes: int = 4, per_class: int = 4) -> Path:
    """root/c<k>/<i>.png: class k is structured photo k (gradients + a block) under fresh
    noise per image, so local descriptors differ across locations and can be matched."""
    photos = write_photos(root / "_src", classes)
    rng = np.random.default_rng(0)
    for k, src in enumerate(sorted(photos.glob("*.jpg"))):
        pixels = np.asarray(Image.open(src).convert("RGB").resize((72, 64)), dtype=np.float64)
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            noisy = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"c{k}" / f"{i}.png")
    shutil.rmtree(photos)
    return root
