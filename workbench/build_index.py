"""Bulk-index a folder tree through the service's own embedder and store code.

    python -m workbench.build_index DIR [--data-dir index_data] [--batch 16]

Ids are paths relative to DIR (POSIX separators) unless --id-mode sha256; each item's metadata is
{"filename": <its file name>}, as POST /index stores an upload's. Resumable: ids already
stored are skipped, so an interrupted run continues where it stopped. Do not run it while the
service is serving the same data directory: one process owns a store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from workbench.cli_errors import run_cli
from workbench.folder_index import index_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("root", type=Path, help="folder tree of images")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: SIMSEARCH_DATA_DIR or index_data)",
    )
    parser.add_argument("--batch", type=int, default=16, help="images per durable store add")
    parser.add_argument("--id-mode", choices=("relpath", "sha256"), default="relpath")
    parser.add_argument(
        "--wait-training",
        action="store_true",
        help="wait for background index builds (FAISS IVF-PQ training) to finish before exiting",
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    return args


def _index(argv: list[str] | None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    summary = asyncio.run(
        index_folder(args.root, args.data_dir, args.batch, args.id_mode, args.wait_training)
    )
    print(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _index(argv))


if __name__ == "__main__":
    raise SystemExit(main())
