"""workbench/evaluation/copy_study/distractors.py: one file per picture, never a shared photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from workbench.evaluation.copy_study.distractors import distractor_files


def _image(path: Path, size: tuple[int, int]) -> None:
    """Noise, so that the file with more pixels is the larger file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_one_file_per_picture_and_never_a_shared_photo(tmp_path: Path) -> None:
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text(
        "file\twidth\theight\tsource\tversion\toriginal_path\tlicense\n"
        "a.jpg\t1\t1\tdebian:x\t1\t/usr/share/backgrounds/gnome/shared.jpg\tx\n"
        "b.jpg\t1\t1\tdebian:y\t1\t/usr/share/wallpapers/Taken/contents/images/5120x2880.png\tx\n"
    )
    root = tmp_path / "root" / "usr" / "share"
    gnome = root / "backgrounds" / "gnome"
    _image(gnome / "shared.jpg", (64, 48))  # a shared photo's original
    _image(gnome / "hills-l.png", (64, 48))  # light and dark: one picture, the larger kept
    _image(gnome / "hills-d.png", (640, 480))
    _image(gnome / "images_dark" / "night.png", (64, 48))  # dark variants are skipped
    plasma = root / "wallpapers"
    _image(plasma / "Taken" / "contents" / "images" / "800x600.png", (80, 60))  # shared
    _image(plasma / "Dunes" / "contents" / "images" / "800x600.png", (80, 60))  # sizes of
    _image(plasma / "Dunes" / "contents" / "images" / "1920x1080.png", (192, 108))  # one
    _image(plasma / "Dunes" / "contents" / "screenshot.png", (40, 30))  # a preview
    (gnome / "notes.txt").write_text("not an image")
    found = [p.relative_to(root).as_posix() for p in distractor_files(tmp_path, manifest)]
    assert found == [
        "backgrounds/gnome/hills-d.png",
        "wallpapers/Dunes/contents/images/1920x1080.png",
    ]
