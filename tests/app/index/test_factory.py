"""The store backend by name: a backend whose optional client is missing fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_milvus_backend_without_its_client_says_what_to_install(tmp_path: Path) -> None:
    """pymilvus is the `milvus` extra: without it the backend refuses with the install line,
    and the FAISS backend still opens (run where pymilvus cannot be imported)."""
    code = (
        "import sys\n"
        "sys.modules['pymilvus'] = None  # as if the extra were not installed\n"
        "from app.config import Settings\n"
        "from app.index.factory import open_vector_store\n"
        f"s = Settings(data_dir={str(tmp_path)!r}, store={{'backend': 'milvus'}})\n"
        "try:\n"
        "    open_vector_store(s, 8, None)\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        f"faiss = open_vector_store(Settings(data_dir={str(tmp_path)!r}), 8, None)\n"
        "print(type(faiss).__name__, len(faiss))\n"
        "faiss.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert "pip install 'dolg-simsearch[milvus]'" in lines[0]
    assert lines[-1] == "FaissStore 0"


def test_the_launcher_refuses_the_milvus_backend_without_its_client(tmp_path: Path) -> None:
    """`python -m app` with the Milvus backend and no pymilvus: one error line naming the
    extra and exit 2 (refused configuration), before any model is loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMSEARCH_")}
    env.update(
        SIMSEARCH_STORE__BACKEND="milvus",
        SIMSEARCH_DATA_DIR=str(tmp_path),  # no model there: loading one would fail otherwise
        SIMSEARCH_PORT="1",
    )
    code = (
        "import sys\n"
        "sys.modules['pymilvus'] = None  # as if the extra were not installed\n"
        "from app.__main__ import main\n"
        "sys.exit(main([]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "pip install 'dolg-simsearch[milvus]'" in out.stderr
    assert "Traceback" not in out.stderr
