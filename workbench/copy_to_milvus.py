#!/usr/bin/env python
"""Copy a FAISS store (a data directory's store/) into a Milvus collection, with progress.

    python -m workbench.copy_to_milvus --data-dir index_data \
        --milvus-uri http://127.0.0.1:19530 --collection simsearch

Resumable: interrupted, the same command continues after the last copied batch (state in
--state-file, default <data-dir>/copy-to-milvus-<collection>.json). Stop the service on the
data directory first (the store has one owner). Then serve from Milvus with
SIMSEARCH_STORE__BACKEND=milvus and the same URI and collection. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from pydantic import SecretStr

from app.config import Settings, StoreSettings
from app.index.migrate import copy_faiss_to_milvus


def _progress_bar(total: int | None):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the dev and train extras
        return None
    return tqdm(total=total, unit="item", dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--milvus-uri", default=defaults.store.milvus_uri)
    parser.add_argument("--collection", default=defaults.store.milvus_collection)
    parser.add_argument("--database", default=defaults.store.milvus_database)
    parser.add_argument(
        "--index-type", default=defaults.store.milvus_index_type, help="for a new collection"
    )
    parser.add_argument("--batch", type=int, default=500, help="items per upsert")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    token = os.environ.get("SIMSEARCH_STORE__MILVUS_TOKEN", "")
    store = StoreSettings(
        backend="milvus",
        milvus_uri=args.milvus_uri,
        milvus_token=SecretStr(token),
        milvus_database=args.database,
        milvus_collection=args.collection,
        milvus_index_type=args.index_type,
        milvus_timeout_s=max(defaults.store.milvus_timeout_s, 60.0),
    )
    state = args.state_file or args.data_dir / f"copy-to-milvus-{args.collection}.json"
    bar = None if args.no_progress else _progress_bar(None)
    report = copy_faiss_to_milvus(
        args.data_dir / "store",
        store,
        state,
        batch=args.batch,
        progress=None if bar is None else bar.update,
    )
    if bar is not None:
        bar.close()
    print(json.dumps(asdict(report), indent=2))
    return 0 if report.collection_count >= report.source_live else 1


if __name__ == "__main__":
    raise SystemExit(main())
