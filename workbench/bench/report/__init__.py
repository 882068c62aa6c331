"""The suite's Markdown report: tables written from its JSON result (`markdown.py`, one module
per section) into the generated block of docs/BENCHMARKS.md (`block.py`)."""
