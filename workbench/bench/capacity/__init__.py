"""The capacity model behind docs/SCALING.md (`python -m workbench.bench.capacity_model`): the
fitted model as pure functions (`model.py`) and the store benchmark runs it reads
(`store_runs.py`)."""
