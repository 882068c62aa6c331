"""Metadata filters: one parsed form, one reference semantics, translated by each store backend.

A filter is a JSON object of conditions on top-level metadata keys, all of which must hold:
    {"album": "trip", "year": {"in": [2023, 2024]}}
- `"key": scalar` means the item's `metadata[key]` equals the scalar;
- `"key": {"in": [scalar, ...]}` means it equals one of them.
Scalars are strings, integers, floats or booleans. Numbers compare by value (1 == 1.0); a boolean
never equals a number (JSON's `true` is not `1`); strings compare exactly (case-sensitive). An item
without the key, without metadata, or whose value is an object, list or null never matches.

`MetadataFilter.matches` is the reference every backend must agree with (tests compare each
backend's filtered search against brute force over `matches`). Keys are restricted to a safe
character set so that backends can embed them in their own query languages without escaping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest

Scalar = str | int | float | bool

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CONDITIONS = 16
MAX_IN_VALUES = 256
MAX_STRING_LENGTH = 1024

_ACCEPTED = (
    'a JSON object of metadata conditions, e.g. {"album": "trip", "year": {"in": [2023, 2024]}}: '
    f"at most {MAX_CONDITIONS} keys matching {KEY_PATTERN.pattern}, each equal to a string, "
    f'number or boolean, or {{"in": [...]}} with 1 to {MAX_IN_VALUES} such values'
)


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    # One value for equality, several for `in`; never empty.
    values: tuple[Scalar, ...]

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        if not metadata or self.key not in metadata:
            return False
        actual = metadata[self.key]
        return any(scalar_equal(actual, v) for v in self.values)


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    conditions: tuple[Condition, ...]

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """The reference semantics: every condition holds."""
        return all(c.matches(metadata) for c in self.conditions)

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (equality for one value, `in` for several)."""
        return {
            c.key: c.values[0] if len(c.values) == 1 else {"in": list(c.values)}
            for c in self.conditions
        }


def scalar_equal(actual: Any, expected: Scalar) -> bool:
    """JSON equality of one stored value with one filter scalar (see the module docstring)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(expected, str) or isinstance(actual, str):
        return isinstance(actual, str) and isinstance(expected, str) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return float(actual) == float(expected)
    return False


def _check_scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"filter: {key!r} has a non-finite number; accepted: {_ACCEPTED}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise InvalidRequest(
                f"filter: a value of {key!r} is longer than {MAX_STRING_LENGTH} characters"
            )
        return value
    raise InvalidRequest(
        f"filter: {key!r} has a value of type {type(value).__name__}; accepted: {_ACCEPTED}"
    )


def parse_filter(obj: Any) -> MetadataFilter | None:
    """Validate a decoded JSON filter; None or {} means no filter. Raises InvalidRequest (422)."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise InvalidRequest(f"filter must be {_ACCEPTED}; got {type(obj).__name__}")
    if not obj:
        return None
    if len(obj) > MAX_CONDITIONS:
        raise InvalidRequest(f"filter has {len(obj)} keys; at most {MAX_CONDITIONS} are accepted")
    conditions = []
    for key, spec in obj.items():
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise InvalidRequest(
                f"filter key {key!r} is not accepted: keys must match {KEY_PATTERN.pattern}"
            )
        if isinstance(spec, Mapping):
            if set(spec) != {"in"} or not isinstance(spec["in"], list):
                raise InvalidRequest(
                    f'filter: {key!r} must be a value or {{"in": [values]}}; accepted: {_ACCEPTED}'
                )
            values = spec["in"]
            if not 1 <= len(values) <= MAX_IN_VALUES:
                raise InvalidRequest(
                    f'filter: {key!r} "in" needs 1 to {MAX_IN_VALUES} values; got {len(values)}'
                )
            conditions.append(Condition(key, tuple(_check_scalar(key, v) for v in values)))
        else:
            conditions.append(Condition(key, (_check_scalar(key, spec),)))
    return MetadataFilter(tuple(conditions))
