"""Memory of the match graph GET /duplicates keeps between calls, at a given store size."""

from __future__ import annotations

import time
from typing import Any


def graph_memory(n: int, copy_fraction: float) -> dict[str, Any]:
    """Python heap of the match graph for `n` stored items, `copy_fraction` of them in pairs
    (what GET /duplicates keeps between calls), measured with tracemalloc."""
    import tracemalloc

    from app.index.store import Hit
    from app.search.match_graph import MatchGraph

    tracemalloc.start()
    graph = MatchGraph()
    pairs = int(n * copy_fraction / 2)
    for i in range(n):
        item_id = f"photos/{i:08d}.jpg"  # a typical id: ~20 characters
        hits = []
        if i < pairs:
            hits = [
                Hit(id=f"photos/{n - 1 - i:08d}.jpg", score=0.95, metadata=None, row=0, match=True)
            ]
        graph.set_matches(item_id, 1.8e9 + i, hits)
    current, _ = tracemalloc.get_traced_memory()
    t0 = time.perf_counter()
    groups = graph.groups()
    groups_s = time.perf_counter() - t0
    tracemalloc.stop()
    return {
        "graph_items": n,
        "graph_groups": len(groups),
        "graph_heap_mib": round(current / 2**20, 1),
        "grouping_s": round(groups_s, 2),
    }
