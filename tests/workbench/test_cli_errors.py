"""Scripts answer expected mistakes with one line saying what to do, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.config import FaissStoreSettings
from app.index.faiss_store import FaissStore
from workbench.artifacts.tiny_model import write_tiny_model

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO.parent / "shared" / "data" / "photos"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_build_index_without_a_model(tmp_path: Path) -> None:
    line = _error_line(
        _run("-m", "workbench.build_index", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    )
    assert "model_meta.json" in line and "make model" in line


def test_build_index_on_a_store_another_process_holds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tiny_model(data / "model")
    # A store opened here holds the directory's lock, as a running server would.
    from app.artifacts import load_model_meta

    meta = load_model_meta(data / "model")
    store = FaissStore.open(
        data / "store", meta.embedding_dim, FaissStoreSettings(), model_sha256=meta.onnx_sha256
    )
    try:
        line = _error_line(
            _run("-m", "workbench.build_index", str(tmp_path), "--data-dir", str(data))
        )
    finally:
        store.close()
    assert "store is open in another process" in line and "stop the server" in line


def test_evaluate_without_the_dataset(tmp_path: Path) -> None:
    line = _error_line(
        _run(
            "-m",
            "workbench.evaluate",
            "--data-root",
            str(tmp_path),
            "--dataset",
            "roxford5k",
            "--model-dir",
            str(tmp_path / "model"),
        )
    )
    assert "gnd_roxford5k.pkl" in line and "check the path" in line
