"""Progress lines of the study, on stderr (stdout carries the JSON)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
