#!/usr/bin/env python
"""Copy a FAISS store (a data directory's store/) into a Milvus collection, with progress.

    python -m workbench.copy_to_milvus --data-dir index_data \
        --milvus-uri http://127.0.0.1:19530 --collection simsearch

Resumable: interrupted, the same command continues after the last copied batch (state in
--state-file, default <data-dir>/copy-to-milvus-<collection>.json). Stop the service on the
data directory first (the store has one owner). Then serve from Milvus with
SIMSEARCH_STORE__BACKEND=milvus and the same URI and collection. Prints a JSON summary.
The FAISS -> Milvus case of `python -m workbench.copy_store` (any backend to any backend).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from app.config import Settings
from workbench.copy_store import run_copy, side_settings


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--milvus-uri", default=defaults.store.milvus.uri)
    parser.add_argument("--collection", default=defaults.store.milvus.collection)
    parser.add_argument("--database", default=defaults.store.milvus.database)
    parser.add_argument(
        "--index-type", default=defaults.store.milvus.index_type, help="for a new collection"
    )
    parser.add_argument("--batch", type=int, default=500, help="items per upsert")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    source = side_settings(defaults, "faiss", args.data_dir)
    target = side_settings(
        defaults, "milvus", None, args.milvus_uri, args.collection, args.database, args.index_type
    )
    state = args.state_file or args.data_dir / f"copy-to-milvus-{args.collection}.json"
    report = run_copy(source, target, state, args.batch, not args.no_progress)
    # `collection_count`: this script's summary key before the copy became backend-neutral.
    print(json.dumps({**asdict(report), "collection_count": report.target_count}, indent=2))
    return 0 if report.target_count >= report.source_live else 1


if __name__ == "__main__":
    raise SystemExit(main())
