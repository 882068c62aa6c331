"""The reference filter semantics every store backend is checked against."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest
from app.index.filters import MetadataFilter, parse_filter


def test_empty_or_none_is_no_filter() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) is None


@pytest.mark.parametrize(
    ("flt", "metadata", "expected"),
    [
        ({"album": "trip"}, {"album": "trip", "x": 1}, True),
        ({"album": "trip"}, {"album": "Trip"}, False),
        ({"album": "trip"}, {"other": "trip"}, False),
        ({"album": "trip"}, None, False),
        ({"year": 2023}, {"year": 2023.0}, True),
        ({"year": {"in": [2023, 2024]}}, {"year": 2024}, True),
        ({"year": {"in": [2023, 2024]}}, {"year": 2025}, False),
        ({"flag": True}, {"flag": 1}, False),
        ({"n": 1}, {"n": True}, False),
        ({"flag": True}, {"flag": True}, True),
        ({"s": "1"}, {"s": 1}, False),
        ({"a": "x"}, {"a": ["x"]}, False),
        ({"a": "x"}, {"a": None}, False),
        ({"a": "x", "b": {"in": [1, "y"]}}, {"a": "x", "b": "y"}, True),
        ({"a": "x", "b": {"in": [1, "y"]}}, {"a": "z", "b": "y"}, False),
    ],
)
def test_reference_semantics(flt: dict, metadata: dict | None, expected: bool) -> None:
    parsed = parse_filter(flt)
    assert isinstance(parsed, MetadataFilter)
    assert parsed.matches(metadata) is expected


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        "album=trip",
        {"bad key": 1},
        {"a": None},
        {"a": [1]},
        {"a": {"in": []}},
        {"a": {"in": 3}},
        {"a": {"eq": 3}},
        {"a": {"in": [{"x": 1}]}},
        {"a": float("nan")},
        {f"k{i}": i for i in range(17)},
    ],
)
def test_invalid_filters_are_rejected_with_what_is_accepted(bad: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_filter(bad)
    assert "filter" in str(err.value)


def test_canonical_json_round_trip() -> None:
    flt = {"album": "trip", "year": {"in": [2023, 2024]}}
    parsed = parse_filter(flt)
    assert parsed is not None
    assert parsed.to_json() == flt
    assert parse_filter(parsed.to_json()) == parsed
