#!/usr/bin/env python
"""GET /duplicates benchmark: the first scan, a cached page, and the incremental updates after
adds and deletes, through the real app (in process, FAISS backend), next to the store's own
neighbour search in the same run.

    python -m workbench.bench.duplicates --n 5000,20000 [--model-dir index_data/model]

Prints one JSON object (last stdout line) with one entry per size.

Data: `n` vectors of the model's dimension as gaussian blobs on the sphere (the generator of
workbench/bench/synthetic.py; cosines to a blob centre ~0.64-0.9), `--copy-fraction` of them
near-copies of random rows (cosine ~0.97 to their source), added with POST /index/vectors.
The grouping reads each hit's `match` verdict from the search service: this bench measures
what the scan costs around whatever verdict is in place (per item: a catalog read, one by-id
search, the verdict).

`--thumbnails DIR` stores every vector with the thumbnail of one of DIR's photos (cycled), so
the verdict's geometry runs as it does on a store of uploaded images: each item's scan then
also pays SIFT on its own thumbnail and on up to `verify_top` neighbours' thumbnails.

Raw reference, same store, same run: `store.search` of single stored vectors (k + 1, what one
by-id search asks of the store) over a sample, and of all vectors in one batched call.

duplicates_data.py makes the vectors and thumbnails, duplicates_scan.py measures one size
through the app, duplicates_graph.py the match graph's memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.bench.common import REPO, loadavg, log
from workbench.bench.duplicates_graph import graph_memory
from workbench.bench.duplicates_scan import measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", default="5000,20000", help="store sizes, comma-separated")
    parser.add_argument("--copy-fraction", type=float, default=0.05)
    parser.add_argument("--model-dir", type=Path, default=REPO / "index_data" / "model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--thumbnails",
        type=Path,
        help="a folder of .jpg photos: store each vector with one's thumbnail (real verifier)",
    )
    parser.add_argument(
        "--graph-n", type=int, default=1_000_000, help="items for the graph memory figure"
    )
    args = parser.parse_args(argv)
    if not (args.model_dir / "model_meta.json").is_file():
        parser.error(f"{args.model_dir}: no model_meta.json (make model, or pass --model-dir)")
    sizes = [int(s) for s in args.n.split(",") if s.strip()]
    results = []
    for n in sizes:
        copies = max(1, int(n * args.copy_fraction))
        results.append(measure(n, copies, args.model_dir, args.seed, args.thumbnails))
        log(json.dumps(results[-1]))
    memory = graph_memory(args.graph_n, args.copy_fraction) if args.graph_n else None
    print(json.dumps({"duplicates": results, "graph_memory": memory, "loadavg": loadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
