"""workbench/build_index.py: ids are relative paths, bad files are skipped, re-runs resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from workbench.artifacts.tiny_model import write_tiny_model

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "index_data" / "samples"


def _run(root: Path, data_dir: Path) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.build_index",
            str(root),
            "--data-dir",
            str(data_dir),
            "--batch",
            "4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_bulk_index_is_resumable_with_relative_path_ids(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    names = sorted(p.name for p in SAMPLES.glob("*.jpg"))[:5]
    for n in names[:3]:
        shutil.copy(SAMPLES / n, root / n)
    (root / "broken.jpg").write_bytes(b"not an image at all")
    data_dir = tmp_path / "data"
    write_tiny_model(data_dir / "model")

    first = _run(root, data_dir)
    assert first["indexed"] == 3 and first["failed"] == 1 and first["ntotal"] == 3

    for n in names[3:]:
        shutil.copy(SAMPLES / n, root / "sub" / n)
    second = _run(root, data_dir)
    # The 3 stored ids are skipped; the broken file is retried and skipped again.
    assert second["skipped_existing"] == 3 and second["indexed"] == 2
    assert second["ntotal"] == 5

    from app.config import Settings
    from app.metrics import Metrics
    from app.runtime import Runtime

    rt = Runtime.start(Settings(data_dir=data_dir), Metrics())
    try:
        expected = set(names[:3]) | {f"sub/{n}" for n in names[3:]}
        assert rt.store.contains(sorted(expected)) == expected
        # The same key as an upload's file name through POST /index.
        assert rt.store.get(f"sub/{names[3]}").metadata == {"filename": names[3]}
    finally:
        rt.close()
