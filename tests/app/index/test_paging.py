"""Cursors round-trip; the id range of a prefix holds exactly the ids that start with it."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest
from app.index.paging import decode_cursor, encode_cursor, prefix_upper_bound


@pytest.mark.parametrize("last_id", ["a", "photos/2024/x.jpg", "é/ü", "\U0001f600", "a" * 500])
def test_cursor_round_trip(last_id: str) -> None:
    assert decode_cursor(encode_cursor(last_id)) == last_id


@pytest.mark.parametrize("cursor", ["", "i1.", "x1.YQ", "i1.YQ==", "i1.%%%"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor is malformed"):
        decode_cursor(cursor)


@pytest.mark.parametrize("prefix", ["a", "ab", "photos/", "z\x7f", "é", "\ud7fe", "\U0010fffe"])
def test_prefix_range_is_exactly_the_prefixed_ids(prefix: str) -> None:
    upper = prefix_upper_bound(prefix)
    assert upper is not None
    inside = [prefix, prefix + "\x00", prefix + "zzz", prefix + "\U0010ffff" * 3]
    outside = [upper, upper + "a", prefix[:-1], prefix[:-1] + chr(ord(prefix[-1]) - 1) + "~"]
    assert all(prefix <= s < upper for s in inside)
    assert not any(prefix <= s < upper for s in outside)


@pytest.mark.parametrize("prefix", ["\U0010ffff", "ab\ud7ff"])
def test_no_encodable_upper_bound(prefix: str) -> None:
    """The last character cannot be incremented into an encodable one: no upper bound."""
    assert prefix_upper_bound(prefix) is None
