"""`python -m workbench.bench`: the benchmark suite (workbench/bench/suite.py)."""

from workbench.bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
