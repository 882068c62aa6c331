#!/usr/bin/env python
"""Copy every live item of one store into another, any backend to any backend, with progress.

    python -m workbench.copy_store --from-data-dir index_data \
        --to-backend milvus --to-milvus-uri http://127.0.0.1:19530 --to-collection simsearch
    python -m workbench.copy_store --from-backend milvus --from-collection simsearch \
        --to-backend faiss --to-data-dir restored

Each side defaults to the store the environment configures (SIMSEARCH_DATA_DIR,
SIMSEARCH_STORE__BACKEND, SIMSEARCH_STORE__MILVUS__*; tokens come only from the environment).
Resumable: interrupted, the same command continues after the last copied batch (state in
--state-file, default copy-state-<target>.json in the working directory). Stop the service on
a FAISS side first (the store has one owner). Prints a JSON summary; exit 1 when the target
holds fewer items than the source.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.config import Settings
from app.index.migrate import CopyReport, copy_store, describe_store
from workbench.cli_errors import run_cli

# A copy moves many batches: a longer per-call deadline than the service's.
COPY_TIMEOUT_S = 60.0


def add_side_options(parser: argparse.ArgumentParser, side: str) -> None:
    """--{side}-backend, --{side}-data-dir, --{side}-milvus-uri, --{side}-collection,
    --{side}-database: one store; unset options keep the environment's settings."""
    parser.add_argument(f"--{side}-backend", choices=["faiss", "milvus"], default=None)
    parser.add_argument(f"--{side}-data-dir", type=Path, default=None)
    parser.add_argument(f"--{side}-milvus-uri", default=None)
    parser.add_argument(f"--{side}-collection", default=None)
    parser.add_argument(f"--{side}-database", default=None)


def side_settings(
    defaults: Settings,
    backend: str | None = None,
    data_dir: Path | None = None,
    milvus_uri: str | None = None,
    collection: str | None = None,
    database: str | None = None,
    index_type: str | None = None,
) -> Settings:
    """`defaults` with one store's options applied (None keeps the default)."""
    milvus: dict[str, Any] = {
        "timeout_s": max(defaults.store.milvus.timeout_s, COPY_TIMEOUT_S),
        "uri": milvus_uri,
        "collection": collection,
        "database": database,
        "index_type": index_type,
    }
    milvus = {k: v for k, v in milvus.items() if v is not None}
    store = defaults.store.model_copy(
        update={
            "backend": backend or defaults.store.backend,
            # Validated: a collection name or index type from the command line is checked here.
            "milvus": type(defaults.store.milvus).model_validate(
                {**defaults.store.milvus.model_dump(), **milvus}
            ),
        }
    )
    return defaults.model_copy(update={"store": store, "data_dir": data_dir or defaults.data_dir})


def _progress_bar() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the dev and train extras
        return None
    return tqdm(unit="item", dynamic_ncols=True)


def default_state_file(target: Settings) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", describe_store(target)).strip("_")
    return Path(f"copy-state-{name[-120:]}.json")


def run_copy(
    source: Settings, target: Settings, state_file: Path, batch: int, show_progress: bool
) -> CopyReport:
    bar = _progress_bar() if show_progress else None
    try:
        return copy_store(
            source, target, state_file, batch=batch, progress=None if bar is None else bar.update
        )
    finally:
        if bar is not None:
            bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_side_options(parser, "from")
    add_side_options(parser, "to")
    parser.add_argument("--index-type", default=None, help="a new Milvus target's index type")
    parser.add_argument("--batch", type=int, default=500, help="items per write")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    defaults = Settings()
    source = side_settings(
        defaults,
        args.from_backend,
        args.from_data_dir,
        args.from_milvus_uri,
        args.from_collection,
        args.from_database,
    )
    target = side_settings(
        defaults,
        args.to_backend,
        args.to_data_dir,
        args.to_milvus_uri,
        args.to_collection,
        args.to_database,
        args.index_type,
    )
    state = args.state_file or default_state_file(target)
    report = run_copy(source, target, state, args.batch, not args.no_progress)
    print(json.dumps(asdict(report), indent=2))
    return 0 if report.target_count >= report.source_live else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
