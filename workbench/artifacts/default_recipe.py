"""The default model's recipe, name and /health text, read from `default_model.json`.

The recipe maps export options (`ExportOptions` field names) to values; `--default` applies it
and forbids changing any of them, so `make model`, the Docker images and the benchmarks all
export the same model from this one file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE_FILE = Path(__file__).with_name("default_model.json")


@dataclass(frozen=True)
class DefaultModel:
    name: str
    recipe: dict[str, Any]  # ExportOptions field -> value (lists become tuples)
    intended_use: str


def load_default_model(path: Path = RECIPE_FILE) -> DefaultModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in data["recipe"].items()}
    return DefaultModel(name=data["name"], recipe=recipe, intended_use=data["intended_use"])


DEFAULT_MODEL = load_default_model()
