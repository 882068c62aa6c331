"""The lint gate of `make lint` inside the test run: ruff over the whole tree and mypy over the
packages that pyproject's [tool.mypy] names (app, simsearch_client, models, workbench), so a
type or lint regression fails the README's test command, not only a manual check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREE = ["app", "models", "workbench", "simsearch_client", "tests"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_reports_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed beside this Python (the dev extra installs it)")
    done = _run([ruff, "check", *TREE])
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_reports_nothing() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    done = _run([sys.executable, "-m", "mypy"])
    assert done.returncode == 0, done.stdout + done.stderr
