"""One-line errors instead of tracebacks for the mistakes a user makes with the tools.

    def main(argv: list[str] | None = None) -> int:
        return run_cli(lambda: _run(argv))   # _run parses argv, works, prints JSON

    if __name__ == "__main__":
        raise SystemExit(main())

Expected mistakes (no model, a store another process holds, a missing dataset or file) print
`error: <what happened>` and, where we know it, what to do, then exit 1. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from app.errors import ArtifactMismatch, SimSearchError

EXIT_ERROR = 1


def _hint(exc: BaseException) -> str:
    if isinstance(exc, ArtifactMismatch) and ("missing" in str(exc) or "not found" in str(exc)):
        return (
            "; create the default model with `make model`, or export yours with "
            "`python -m workbench.export --checkpoint CKPT --out index_data/model`"
        )
    if type(exc).__name__ == "StoreLocked":
        return "; stop the server using this data directory (or pass another --data-dir) first"
    if isinstance(exc, FileNotFoundError):
        return "; check the path (datasets: see the README's evaluation section)"
    return ""


def describe(exc: BaseException) -> str:
    """The one line printed for an expected error."""
    text = str(exc) or type(exc).__name__
    return f"error: {text}{_hint(exc)}"


def run_cli(main: Callable[[], Any]) -> int:
    """Run `main()`; expected errors -> one line on stderr and exit code 1. An int result is
    the exit code; any other result (a script's JSON summary) means success."""
    try:
        result = main()
    except (SimSearchError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(describe(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
