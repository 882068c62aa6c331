"""Milvus boolean expressions built from our values: id literals, id lists, id ranges and the
translation of `MetadataFilter` onto the JSON `metadata` field.

String literals are JSON strings (double quotes; `\\"`, `\\\\` and control characters escaped,
everything else verbatim UTF-8), which Milvus's expression parser unquotes exactly: ids with
quotes, backslashes, brackets or emoji round-trip (tested). Filter keys match
`filters.KEY_PATTERN`, so they sit inside `metadata["..."]` without escaping.

Measured on Milvus 2.3.5 against `MetadataFilter.matches`: `metadata["k"] == 1` matches
stored 1 and 1.0 but not true or "1"; `== true` matches only booleans; strings compare
exactly; missing keys, nulls and arrays never match. An `in` list mixing types fails inside
the server, so `in` becomes an `or` of equalities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from app.index.filters import MetadataFilter, Scalar
from app.index.paging import prefix_upper_bound


def literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def ids_in(ids: Sequence[str]) -> str:
    return "id in [" + ", ".join(literal(i) for i in ids) + "]"


def id_range(after: str | None, prefix: str | None) -> str:
    """Ids > `after` that start with `prefix` (a half-open range in byte order, which is
    code-point order for UTF-8); all ids when both are None."""
    parts = [f"id > {literal(after)}" if after is not None else 'id > ""']
    if prefix:
        parts.append(f"id >= {literal(prefix)}")
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            parts.append(f"id < {literal(upper)}")
    return " and ".join(parts)


def starts_with(item_id: str, prefix: str | None) -> bool:
    return not prefix or item_id.startswith(prefix)


def metadata_filter(flt: MetadataFilter) -> str:
    """Every condition holds; a condition holds when the key equals one of its values."""
    clauses = []
    for cond in flt.conditions:
        field = f'metadata["{cond.key}"]'
        options = [f"{field} == {literal(v)}" for v in cond.values]
        clauses.append("(" + " or ".join(options) + ")")
    return " and ".join(clauses)
