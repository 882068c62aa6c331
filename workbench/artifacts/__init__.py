"""The service's artifact (model.onnx + model_meta.json) from a network: the export library.

`ExportOptions` says what to export (a checkpoint, ImageNet or random weights, precision,
preprocessing, calibration, SuperGlobal modules, naming); `export_artifact` writes and checks
it. The default model's recipe is data (`default_model.json`, read by `default_recipe.py`).
"""

from workbench.artifacts.default_recipe import DEFAULT_MODEL, DefaultModel
from workbench.artifacts.export import export_artifact
from workbench.artifacts.options import ExportOptions

__all__ = ["DEFAULT_MODEL", "DefaultModel", "ExportOptions", "export_artifact"]
