"""The artifact the suite measures: the given one, the default export, or the tiny graph."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from workbench.bench.measured_model import DEFAULT_EXPORT, prepare_model

REPO = Path(__file__).resolve().parents[3]


def _make_model_export_args() -> list[str]:
    """The export flags of the Makefile's model rule (`$(PY) -m workbench.export ... --out ...`)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if "-m workbench.export" in line and not line.lstrip().startswith("#"):
            words = shlex.split(line.split("-m workbench.export", 1)[1])
            out = words.index("--out")
            return words[:out] + words[out + 2 :]
    raise AssertionError("no `-m workbench.export` rule in the Makefile")


@pytest.mark.torch
def test_without_model_dir_the_bench_exports_what_make_model_exports() -> None:
    """No --model-dir: the bench measures the service's default (export.py --default, the
    Lite0 + GeM recipe), with the same flags as `make model`, not a copy of the recipe."""
    from workbench import export

    assert _make_model_export_args() == DEFAULT_EXPORT
    args = export.parse_args([*DEFAULT_EXPORT, "--out", "unused"])
    for key, value in export.DEFAULT_MODEL.recipe.items():
        assert getattr(args, key) == value, key
    assert args.name == export.DEFAULT_MODEL.name and args.backbone == "efficientnet_lite0"
    assert not args.random_init and not args.calibrate_bn


def test_a_given_artifact_is_measured_as_it_is_and_quick_writes_the_tiny_graph(
    tmp_path: Path,
) -> None:
    from app.artifacts import load_model_meta

    given = tmp_path / "given"
    assert prepare_model(given, quick=False, work=tmp_path / "work") == given
    assert not (tmp_path / "work").exists()
    tiny = prepare_model(None, quick=True, work=tmp_path / "work")
    assert tiny == tmp_path / "work" / "model"
    assert load_model_meta(tiny).preprocessing.max_side == 256
