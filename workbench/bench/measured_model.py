"""The artifact the suite measures: the one given with --model-dir; else the default model of
`make model` / `make run`, exported to a temp folder; else (--quick) the tiny test graph."""

from __future__ import annotations

import time
from pathlib import Path

from workbench.bench.common import log, run_json_child

# The default model of `make model` / `make run`: `python -m workbench.export --default` holds the
# recipe (one place), so the bench measures whatever the service ships.
DEFAULT_EXPORT = ["--default", "--version", "1"]


def prepare_model(model_dir: Path | None, quick: bool, work: Path) -> Path:
    """`model_dir` when given; otherwise an artifact written under `work`."""
    if model_dir is not None:
        return model_dir
    out = work / "model"
    if quick:
        from workbench.artifacts.tiny_model import write_tiny_model

        log("no --model-dir: using the tiny test graph (--quick)")
        return write_tiny_model(out, max_side=256)
    log("no --model-dir: exporting the default model of `make run` (export.py --default) ...")
    t0 = time.perf_counter()
    run_json_child(["-m", "workbench.export", *DEFAULT_EXPORT, "--out", str(out)])
    log(f"exported in {time.perf_counter() - t0:.0f}s")
    return out
