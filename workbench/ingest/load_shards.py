#!/usr/bin/env python
"""Load Parquet shards written by workbench/ingest/embed_shard.py into a FAISS store or Milvus.

    python -m workbench.ingest.load_shards SHARDS [SHARDS ...] --faiss-store index_data/store
    python -m workbench.ingest.load_shards SHARDS --milvus-uri http://127.0.0.1:19530 \
        --collection simsearch --files-dir DIR [--server-prefix PATH] [--method bulk|upsert]

FAISS: durable appends through the store's bulk write path, then one index build over all
rows (IVF-PQ when there are enough). Stop the service on the store first (one owner).
Milvus, --method bulk (default): each part is rewritten in the collection's shape into
--files-dir, a folder the server reads import files from (the local standalone server
of workbench/servers/milvus_server.py: <its --data-dir>/data; a cluster: a folder synced to
its MinIO/S3 bucket, named there by --server-prefix), and imported with Milvus's bulk-insert API.
--method upsert: the same rows through the store's batched upserts (--batch rows each).
Both skip parts a previous run finished (state file). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from workbench.ingest.bulk import find_parts, load_faiss, load_milvus_bulk, load_milvus_upsert


def main(argv: list[str] | None = None) -> int:
    from app.config import MilvusSettings, Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("shards", type=Path, nargs="+", help="shards folders or part files")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--faiss-store", type=Path, help="FAISS store directory")
    target.add_argument("--milvus-uri", help="Milvus server URI")
    parser.add_argument("--collection", default=defaults.store.milvus.collection)
    parser.add_argument("--database", default=defaults.store.milvus.database)
    parser.add_argument("--index-type", default=defaults.store.milvus.index_type)
    parser.add_argument("--method", choices=("bulk", "upsert"), default="bulk")
    parser.add_argument("--batch", type=int, default=500, help="rows per upsert (--method upsert)")
    parser.add_argument("--files-dir", type=Path, help="folder the Milvus server imports from")
    parser.add_argument("--server-prefix", help="--files-dir as the server names it")
    parser.add_argument("--state-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parts = find_parts(args.shards)
    if not parts:
        parser.error(f"no part files under {', '.join(map(str, args.shards))}")
    if args.faiss_store is not None:
        report = load_faiss(
            parts, args.faiss_store, defaults.faiss_store_settings(), state_file=args.state_file
        )
    else:
        store = MilvusSettings(
            uri=args.milvus_uri,
            token=defaults.store.milvus.token,
            database=args.database,
            collection=args.collection,
            index_type=args.index_type,
            timeout_s=max(defaults.store.milvus.timeout_s, 60.0),
        )
        if args.method == "upsert":
            report = load_milvus_upsert(parts, store, defaults.index, batch=args.batch)
        else:
            if args.files_dir is None:
                parser.error("--method bulk needs --files-dir")
            args.files_dir.mkdir(parents=True, exist_ok=True)
            report = load_milvus_bulk(
                parts,
                store,
                defaults.index,
                args.files_dir,
                server_prefix=args.server_prefix,
                state_file=args.state_file,
            )
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    from workbench.cli_errors import run_cli

    raise SystemExit(run_cli(main))
