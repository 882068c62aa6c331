"""The match graph behind GET /duplicates, pure: stored items joined by `match` edges, its
groups (connected components of two or more items, largest first) and their paging cursor."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.errors import InvalidRequest
from app.index.store import Hit


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    # Oldest item first (the likely original), then by id.
    ids: list[str]
    # ids[0]: the item to keep by default.
    representative: str
    # Highest score of a match edge inside the group (cosine, no re-ranking).
    max_score: float

    @property
    def size(self) -> int:
        return len(self.ids)

    def sort_key(self) -> tuple[int, str]:
        """Largest first, then by the smallest id (stable while the group is unchanged)."""
        return (-len(self.ids), min(self.ids))


@dataclass
class MatchGraph:
    """Undirected match edges over the stored items, with each item's creation time."""

    # id -> creation time (Unix seconds) of every live item the graph covers, singletons too.
    nodes: dict[str, float] = field(default_factory=dict)
    # id -> {neighbour id: best score of a match between them}
    edges: dict[str, dict[str, float]] = field(default_factory=dict)
    # Bumped on every change: the sorted groups are cached per version.
    version: int = 0

    def remove(self, item_id: str) -> None:
        self.nodes.pop(item_id, None)
        for other in self.edges.pop(item_id, {}):
            neighbours = self.edges.get(other)
            if neighbours is not None:
                neighbours.pop(item_id, None)
                if not neighbours:
                    del self.edges[other]
        self.version += 1

    def set_matches(
        self, item_id: str, created_at: float, hits: Iterable[Hit], replace: bool = False
    ) -> None:
        """Record `item_id` and the matches its own search found. With `replace` (an id added
        again: a new picture) its old edges are dropped first; a scan keeps the edges other
        items' searches found to it."""
        if replace:
            self.remove(item_id)
        self.nodes[item_id] = created_at
        self.version += 1
        for hit in hits:
            if hit.match and hit.id != item_id:
                self.add_edge(item_id, hit.id, hit.score)

    def add_edge(self, a: str, b: str, score: float) -> None:
        for x, y in ((a, b), (b, a)):
            row = self.edges.setdefault(x, {})
            row[y] = max(score, row.get(y, score))
        self.version += 1

    def groups(self) -> list[DuplicateGroup]:
        """Connected components of two or more live items, largest first."""
        seen: set[str] = set()
        out: list[DuplicateGroup] = []
        for start in self.edges:
            if start in seen or start not in self.nodes:
                continue
            component, best = [], float("-inf")
            stack = [start]
            seen.add(start)
            while stack:
                node = stack.pop()
                component.append(node)
                for other, score in self.edges.get(node, {}).items():
                    if other not in self.nodes:
                        continue  # an edge to an item deleted elsewhere
                    best = max(best, score)
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
            if len(component) >= 2:
                component.sort(key=lambda i: (self.nodes[i], i))
                out.append(DuplicateGroup(component, component[0], best))
        out.sort(key=DuplicateGroup.sort_key)
        return out


def encode_cursor(group: DuplicateGroup) -> str:
    raw = json.dumps([group.size, min(group.ids)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The sort key of the last group of the previous page; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        size, last_id = json.loads(raw)
        if isinstance(size, int) and size >= 2 and isinstance(last_id, str):
            return (-size, last_id)
    except (binascii.Error, ValueError, TypeError):
        pass
    raise InvalidRequest(
        "cursor is not one this server gave out: pass the `next_cursor` of the previous "
        "GET /duplicates page unchanged, or omit it for the first page"
    )


def page_of(
    groups: Sequence[DuplicateGroup], limit: int, cursor: str | None
) -> tuple[list[DuplicateGroup], str | None]:
    """Groups after `cursor` in (size desc, smallest id) order, `limit` at a time."""
    start = 0
    if cursor is not None:
        after = decode_cursor(cursor)
        start = next((n for n, g in enumerate(groups) if g.sort_key() > after), len(groups))
    chunk = list(groups[start : start + limit])
    more = start + limit < len(groups)
    return chunk, encode_cursor(chunk[-1]) if more and chunk else None
