"""The floors of docs/ARCHITECTURE.md 1, read from the source: imports point down, never up.

workbench (the tooling) sits on app and models; app and models never import it, app never
imports models, models never import app, the client imports nothing of the project, and no
shipped package imports the tests (a Docker image or an installed package has none).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("app", "models", "workbench", "simsearch_client", "tests")
# package -> the project packages it must not import
FORBIDDEN = {
    "app": {"models", "workbench", "tests"},
    "models": {"app", "workbench", "tests"},
    "simsearch_client": {"app", "models", "workbench", "tests"},
    "workbench": {"tests"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in the file (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PROJECT)


def test_the_parser_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from workbench.export import main\n    import models.dolg\n")
    assert _imported_packages(source) == {"workbench", "models"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_import(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        hits = _imported_packages(path) & FORBIDDEN[package]
        if hits:
            bad.append(f"{path.relative_to(REPO)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_every_tool_runs_as_a_module_without_path_edits() -> None:
    """`python -m workbench.<tool>` from the repository root: no tool edits sys.path."""
    edits = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "workbench").rglob("*.py"))
        if "sys.path.insert" in path.read_text(encoding="utf-8")
        or "sys.path.append" in path.read_text(encoding="utf-8")
    ]
    assert not edits, edits
