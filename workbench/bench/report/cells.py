"""How a figure reads in a table cell."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    """None -> "-"; floats to 3 significant digits below 100, whole numbers with thousands
    separators above; anything else as str()."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
