"""The tooling: export, training, evaluation, indexing, benchmarks and the dev servers.

A floor above `app` and `models`: it may import both, neither imports it. Every tool is a module
with `main(argv) -> int`, run as `python -m workbench.<name>` from the repository root.
"""
