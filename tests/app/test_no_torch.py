"""The service must never load torch (docs/ARCHITECTURE.md 1): import app.main in a clean
interpreter."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_app_main_does_not_import_torch() -> None:
    code = (
        "import sys, app.main\n"
        "bad = sorted(m for m in ('torch', 'torchvision', 'onnx', 'models') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "", f"app.main imported {out.stdout.strip()}"
