#!/usr/bin/env python
"""What the copy verdict costs per image search; prints JSON.

    python -m workbench.bench.copy_verdict --model-dir index_data/model \
        --photos ../shared/data/photos

Indexes the shared photos (with their thumbnails) through the service, then searches with
edited copies of them (half crops, grey, mirror) and reports, per search, the service's own
timings: `verify` (the verdict: query SIFT, stored thumbnails' SIFT on a cache miss, matching,
RANSAC) beside `embed` (decode + model) of the same search, cold cache (first pass) and warm
(second pass), so the ratio holds on a shared, noisy machine. The measurement is
copy_verdict_cost.py (the edits are the copy-verdict study's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from workbench.bench.copy_verdict_cost import measure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--model-dir", type=Path, default=Path("index_data/model"))
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    args = ap.parse_args(argv)
    result = asyncio.run(measure(args.model_dir, args.photos))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
