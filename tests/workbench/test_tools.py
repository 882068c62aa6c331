"""Every tool of the workbench is `python -m workbench.<name>` over `main(argv) -> int`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = sorted(
    path
    for path in (REPO / "workbench").rglob("*.py")
    if re.search(r'^if __name__ == "__main__":', path.read_text(encoding="utf-8"), re.MULTILINE)
)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_the_tools_are_found() -> None:
    names = {_module(p) for p in TOOLS}
    assert {
        "workbench.export",
        "workbench.evaluate",
        "workbench.build_index",
        "workbench.train",
        "workbench.bench.suite",
    } <= names, names


@pytest.mark.parametrize("path", TOOLS, ids=_module)
def test_main_takes_argv_and_returns_an_exit_code(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.name == "__main__.py":  # `python -m workbench.bench`: the suite's main
        assert any(isinstance(n, ast.ImportFrom) and n.names[0].name == "main" for n in tree.body)
        return
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1, "no module-level main()"
    main = mains[0]
    assert [a.arg for a in main.args.args] == ["argv"]
    assert main.args.defaults and ast.unparse(main.args.defaults[0]) == "None"
    assert main.returns is not None and ast.unparse(main.returns) == "int"


@pytest.mark.parametrize("module", ["workbench.export", "workbench.bench", "workbench.evaluate"])
def test_help_runs_as_a_module(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
