"""The match graph behind GET /duplicates: components, ordering, paging and its cursor, on
hand-built edges."""

from __future__ import annotations

import base64

import pytest

from app.errors import InvalidRequest
from app.index.store import Hit
from app.search.match_graph import MatchGraph, decode_cursor, encode_cursor, page_of


def _hit(item_id: str, score: float, match: bool) -> Hit:
    return Hit(id=item_id, score=score, metadata=None, row=0, match=match)


def _graph() -> MatchGraph:
    """a-b-c chained (a and c never match directly), d-e, f alone, g similar but no match."""
    g = MatchGraph()
    g.set_matches("c", 3.0, [_hit("b", 0.9, True), _hit("a", 0.7, False)])
    g.set_matches("a", 1.0, [_hit("b", 0.95, True), _hit("g", 0.8, False)])
    g.set_matches("b", 2.0, [_hit("a", 0.95, True), _hit("c", 0.9, True)])
    g.set_matches("e", 4.0, [_hit("d", 0.99, True)])
    g.set_matches("d", 5.0, [])
    g.set_matches("f", 6.0, [_hit("g", 0.5, False)])
    g.set_matches("g", 7.0, [])
    return g


def test_components_largest_first_oldest_item_first() -> None:
    groups = _graph().groups()
    assert [g.ids for g in groups] == [["a", "b", "c"], ["e", "d"]]
    assert [g.representative for g in groups] == ["a", "e"]
    assert groups[0].max_score == pytest.approx(0.95)
    assert groups[1].max_score == pytest.approx(0.99)


def test_a_scan_keeps_edges_found_from_the_other_side() -> None:
    # d's own search found nothing, e's found d: still one group (the scan does not drop it).
    assert ["e", "d"] in [g.ids for g in _graph().groups()]


def test_remove_splits_a_chain_and_replace_drops_old_edges() -> None:
    g = _graph()
    g.remove("b")
    assert [grp.ids for grp in g.groups()] == [["e", "d"]]
    g = _graph()
    # "e" is added again as another picture: its old match with d goes.
    g.set_matches("e", 8.0, [_hit("f", 0.9, True)], replace=True)
    assert [grp.ids for grp in g.groups()] == [["a", "b", "c"], ["f", "e"]]


def test_ties_are_ordered_by_smallest_id() -> None:
    g = MatchGraph()
    for a, b in (("z1", "z2"), ("m1", "m2"), ("q1", "q2")):
        g.set_matches(a, 0.0, [_hit(b, 0.9, True)])
        g.set_matches(b, 0.0, [])
    assert [grp.ids[0] for grp in g.groups()] == ["m1", "q1", "z1"]


def test_paging_visits_every_group_once_in_order() -> None:
    g = MatchGraph()
    for n in range(7):  # groups of sizes 2..8
        ids = [f"g{n}/{i}" for i in range(n + 2)]
        for i in ids:
            g.set_matches(i, 0.0, [_hit(j, 0.9, True) for j in ids if j != i])
    groups = g.groups()
    assert [grp.size for grp in groups] == [8, 7, 6, 5, 4, 3, 2]
    seen, cursor = [], None
    while True:
        chunk, cursor = page_of(groups, 3, cursor)
        seen += [grp.ids for grp in chunk]
        if cursor is None:
            break
    assert seen == [grp.ids for grp in groups]


def test_a_cursor_continues_after_its_group_even_when_groups_change() -> None:
    g = _graph()
    first, cursor = page_of(g.groups(), 1, None)
    assert first[0].ids == ["a", "b", "c"] and cursor is not None
    # The group already paged shrinks to 2 items: its place moves after the cursor, so the
    # next page shows it again in its new form (before d-e: same size, "a" < "d").
    g.remove("c")
    rest, nxt = page_of(g.groups(), 10, cursor)
    assert [grp.ids for grp in rest] == [["a", "b"], ["e", "d"]]
    assert nxt is None


def test_cursor_round_trip_and_bad_cursors() -> None:
    groups = _graph().groups()
    assert decode_cursor(encode_cursor(groups[0])) == groups[0].sort_key()
    bad = [
        "not base64 !",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'[1, "a"]').decode(),  # no group has fewer than 2 items
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        "",
    ]
    for cursor in bad:
        with pytest.raises(InvalidRequest, match="next_cursor"):
            decode_cursor(cursor)
