"""The study's distractors: real wallpapers from Debian packages (photos and renders), one
file per picture, never one of the shared photos' originals."""

from __future__ import annotations

import subprocess
from pathlib import Path

DISTRACTOR_PACKAGES = [
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "ukui-wallpapers",
    "sway-backgrounds",
]
# The formats the packages ship pictures in (the service accepts more; the set of distractors,
# and so the study's figures, depend on this list).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def fetch_distractors(root: Path) -> None:
    """`apt-get download` the packages into root/debs, unpacked under root/root (Debian only)."""
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *DISTRACTOR_PACKAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "root")], check=True)


def distractor_files(root: Path, manifest: Path) -> list[Path]:
    """One file per picture under `root`, never one of the shared photos' originals (their
    package paths are in the photos' MANIFEST.tsv, column 6)."""
    shared = set()
    for line in manifest.read_text().splitlines()[1:]:
        original = line.split("\t")[5]
        parts = Path(original).parts
        shared.add(Path(original).name)
        if "wallpapers" in parts:  # plasma: the wallpaper's folder names the picture
            shared.add(parts[parts.index("wallpapers") + 1])
    chosen: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parts = path.parts
        if "images_dark" in parts or path.name in shared:
            continue
        if "wallpapers" in parts and "contents" in parts:
            key = parts[parts.index("contents") - 1]
            if key in shared or "screenshot" in path.name:
                continue
        else:
            stem = path.stem
            for suffix in ("-l", "-d"):  # GNOME light/dark pairs are one picture
                stem = stem.removesuffix(suffix)
            key = f"{path.parent.name}/{stem}"
        if key not in chosen or path.stat().st_size > chosen[key].stat().st_size:
            chosen[key] = path
    return sorted(chosen.values())
