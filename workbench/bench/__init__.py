"""Benchmarks that print JSON (`python -m workbench.bench` runs the suite) and their helpers."""
