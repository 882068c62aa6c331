"""`python -m simsearch_client` (or `simsearch`): the service from a shell.

    simsearch search query.jpg --top-k 5 [--bbox 10,10,200,200] [--filter '{"album": "trip"}']
    simsearch more-like photos/eiffel.jpg
    simsearch index ./photos --concurrency 2 --batch 8        (resumes: skips stored ids)
    simsearch list [--prefix photos/] [--all]
    simsearch get ID [--vector]
    simsearch delete ID [ID ...]
    simsearch duplicates [--limit 20] [--json]              (groups of stored copies)

The server is --url (default $SIMSEARCH_URL or http://127.0.0.1:8000), the key --api-key
(default $SIMSEARCH_API_KEY). Results print as JSON lines (one object per line) for scripts.
Exit codes: 0 done, 1 the server refused or some images failed, 2 bad usage, 141 the reader
of the output went away (e.g. `simsearch list --all | head`), as for other Unix tools.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from simsearch_client.bulk import index_folder
from simsearch_client.client import DEFAULT_URL, ApiError, SearchResult, SimSearchClient
from simsearch_client.progress import ProgressPrinter

# 128 + SIGPIPE: what a shell reports for a writer whose reader closed the pipe.
EXIT_BROKEN_PIPE = 141


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except where there is none to show (None, '', a
    flag's False) or the help text already says it (an environment variable, never its
    value)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, "", argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _bbox(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("bbox must be four numbers x1,y1,x2,y2") from exc
    if len(values) != 4:
        raise argparse.ArgumentTypeError("bbox must be four numbers x1,y1,x2,y2")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _add_search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=int, default=10, help="number of results")
    p.add_argument("--rerank", choices=["none", "superglobal"], default="none", help="re-ranking")
    p.add_argument(
        "--rerank-top-m", type=int, default=None, help="SuperGlobal's M (server default if unset)"
    )
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists probed (IVF-PQ only)")
    p.add_argument("--score-threshold", type=float, default=None, help="minimum cosine score")
    p.add_argument("--filter", type=_json_object, default=None, help="JSON metadata filter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simsearch", description="Client for the image-similarity search service."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SIMSEARCH_URL", DEFAULT_URL),
        help=f"the server (default: $SIMSEARCH_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SIMSEARCH_API_KEY"),
        help="API key (default: $SIMSEARCH_API_KEY; none without it)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="search with an image")
    p.add_argument("image", type=Path)
    p.add_argument("--bbox", type=_bbox, default=None, help="x1,y1,x2,y2 query region")
    _add_search_options(p)

    p = sub.add_parser("more-like", help="search with a stored item")
    p.add_argument("id")
    p.add_argument("--include-self", action="store_true")
    _add_search_options(p)

    p = sub.add_parser("index", help="index a folder of images into the running server")
    p.add_argument("folder", type=Path)
    p.add_argument("--batch", type=int, default=8, help="images per request")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    p.add_argument(
        "--id",
        choices=["path", "sha256"],
        default="path",
        help="id of each image: its path under the folder, or the SHA-256 of its bytes",
    )
    p.add_argument("--id-prefix", default="", help="put before every id (e.g. 'photos/')")
    p.add_argument("--metadata", type=_json_object, default=None, help="for every image")
    p.add_argument(
        "--no-resume", action="store_true", help="send every image, even ids already stored"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=None,
        help="seconds between progress lines (default: 0.2 on a terminal, rewriting one "
        "line; 5 otherwise, one line each)",
    )

    p = sub.add_parser("list", help="list stored items")
    p.add_argument("--prefix", default=None, help="only ids starting with this")
    p.add_argument("--limit", type=int, default=50, help="items per page")
    p.add_argument("--cursor", default=None, help="the page after the one that printed it")
    p.add_argument("--all", action="store_true", help="every page")

    p = sub.add_parser("get", help="read one item")
    p.add_argument("id")
    p.add_argument("--vector", action="store_true", help="include the stored descriptor")

    p = sub.add_parser("delete", help="delete items")
    p.add_argument("ids", nargs="+")

    p = sub.add_parser("duplicates", help="groups of stored items that are copies")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the N largest groups")
    p.add_argument("--json", action="store_true", help="one JSON object per group")
    p.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait while the server scans a large store (default 300)",
    )
    for sub_parser in (parser, *sub.choices.values()):
        sub_parser.formatter_class = _HelpFormatter
    return parser


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def _print_hits(result: SearchResult) -> None:
    for hit in result.results:
        _print(asdict(hit))


def _search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "top_k": args.top_k,
        "rerank": args.rerank,
        "rerank_top_m": args.rerank_top_m,
        "nprobe": args.nprobe,
        "score_threshold": args.score_threshold,
        "filter": args.filter,
    }


def _print_duplicates(client: SimSearchClient, args: argparse.Namespace) -> None:
    """Every group (or the --limit largest), largest first: the one to keep, then its copies."""
    shown = items = 0
    page_size = min(args.limit or 100, 100)
    for group in client.iter_duplicates(page_size=page_size, wait=args.wait):
        if args.limit is not None and shown >= args.limit:
            break
        shown += 1
        items += group.size
        if args.json:
            _print(asdict(group))
            continue
        print(f"group {shown}: {group.size} copies (highest score {group.max_score:.3f})")
        print(f"  keep  {group.representative}")
        for item_id in group.ids[1:]:
            print(f"        {item_id}")
    summary = f"{shown} groups, {items} items" if shown else "no duplicates stored"
    print(summary, file=sys.stderr if args.json else sys.stdout)


def _run(client: SimSearchClient, args: argparse.Namespace) -> int:
    if args.command == "search":
        if not args.image.is_file():
            raise FileNotFoundError(f"{args.image}: no such file")
        _print_hits(client.search(args.image, bbox=args.bbox, **_search_kwargs(args)))
        return 0
    if args.command == "more-like":
        _print_hits(
            client.search_by_id(args.id, include_self=args.include_self, **_search_kwargs(args))
        )
        return 0
    if args.command == "index":
        progress = ProgressPrinter(sys.stderr, quiet=args.quiet, interval_s=args.progress_interval)
        try:
            report = index_folder(
                client,
                args.folder,
                batch_size=args.batch,
                concurrency=args.concurrency,
                id_scheme=args.id,
                id_prefix=args.id_prefix,
                resume=not args.no_resume,
                metadata=args.metadata,
                progress=progress,
            )
        except (httpx.TransportError, ApiError) as exc:
            progress.close()
            if progress.report is None:
                raise  # nothing was sent: the usual one-line error
            _stopped_midway(args, progress, exc)
            return 1
        progress.close()
        for path, reason in report.failed:
            print(f"failed: {path}: {reason}", file=sys.stderr)
        _print(
            {
                "total": report.total,
                "indexed": report.indexed,
                "skipped": report.skipped,
                "replaced": report.replaced,
                "failed": len(report.failed),
            }
        )
        return 1 if report.failed else 0
    if args.command == "list":
        if args.all:
            for item in client.iter_items(id_prefix=args.prefix):
                _print(asdict(item))
            return 0
        page = client.list_items(args.limit, args.cursor, args.prefix)
        for item in page.items:
            _print(asdict(item))
        if page.next_cursor is None:
            footer = f"{len(page.items)} of {page.total} items; the last page"
        else:
            footer = (
                f"{len(page.items)} of {page.total} items; next page: --cursor "
                f"{page.next_cursor} (or --all for every page)"
            )
        print(footer, file=sys.stderr)
        return 0
    if args.command == "get":
        _print(asdict(client.get_item(args.id, include_vector=args.vector)))
        return 0
    if args.command == "delete":
        missing = []
        for item_id in args.ids:
            deleted = client.delete_item(item_id)
            _print({"id": item_id, "deleted": deleted})
            if not deleted:
                missing.append(item_id)
                print(f"not found: {item_id}", file=sys.stderr)
        print(f"deleted {len(args.ids) - len(missing)} of {len(args.ids)}", file=sys.stderr)
        return 1 if missing else 0
    if args.command == "duplicates":
        _print_duplicates(client, args)
        return 0
    raise AssertionError(args.command)


def _stopped_midway(args: argparse.Namespace, progress: ProgressPrinter, exc: Exception) -> None:
    """The server went away (or refused everything) during `index`: say how far it got and
    that the same command resumes, since every answered batch is durable."""
    report = progress.report
    assert report is not None
    reason = (
        f"the server answered {exc.status}: {exc.detail}"
        if isinstance(exc, ApiError)
        else f"the server at {args.url} stopped answering ({type(exc).__name__}: {exc})"
    )
    print(
        f"error: {reason}\n"
        f"stopped after {report.indexed} of {report.total} images were indexed in this run "
        f"({report.skipped} were already stored, {len(report.failed)} failed); what was "
        "indexed is stored. Once the server is back, run the same command again to resume: "
        "stored ids are skipped.",
        file=sys.stderr,
    )


def _silence_stdout() -> None:
    """The reader of stdout has gone (`| head`): further writes, including the interpreter's
    final flush, go nowhere instead of raising BrokenPipeError at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with SimSearchClient(args.url, api_key=args.api_key, timeout=args.timeout) as client:
            return _run(client, args)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except ApiError as exc:
        print(f"error: the server answered {exc.status}: {exc.detail}", file=sys.stderr)
    except httpx.ConnectError:
        print(
            f"error: no server answers at {args.url}; start one (make run) or pass --url",
            file=sys.stderr,
        )
    except httpx.TimeoutException:
        print(f"error: {args.url} did not answer within {args.timeout} s", file=sys.stderr)
    except (FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
