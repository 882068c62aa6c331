"""workbench.bench.milvus: the sides it compares take turns, so that a shared machine's load
changes hit them alike (the helpers only; the benchmark itself is a script, not a test)."""

from __future__ import annotations

import numpy as np

from workbench.bench.milvus import _interleaved_batches, _interleaved_latency


def test_single_queries_alternate_sides_and_rotate_who_goes_first() -> None:
    calls: list[tuple[str, int]] = []
    queries = np.arange(8, dtype=np.float32).reshape(4, 2)  # [4 queries, D=2]

    def side(name: str):
        return lambda q: calls.append((name, int(q[0])))

    lat = _interleaved_latency({"a": side("a"), "b": side("b"), "c": side("c")}, queries, 3)

    assert calls == [
        ("a", 0), ("b", 0), ("c", 0),
        ("b", 2), ("c", 2), ("a", 2),
        ("c", 4), ("a", 4), ("b", 4),
    ]  # fmt: skip
    assert {name: len(v) for name, v in lat.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in lat.values() for t in v)


def test_batches_go_to_every_side_in_turn_and_keep_each_sides_answers() -> None:
    order: list[str] = []
    queries = np.zeros((5, 2), dtype=np.float32)

    def side(name: str, first_id: int):
        def search(qs: np.ndarray) -> list[list[str]]:
            order.append(name)
            return [[f"v{first_id:08d}"] for _ in range(qs.shape[0])]

        return search

    out = _interleaved_batches({"a": side("a", 7), "b": side("b", 3)}, queries, 2)

    assert order == ["a", "b", "b", "a", "a", "b"]  # 3 batches of <= 2 queries
    qps_a, found_a = out["a"]
    qps_b, found_b = out["b"]
    assert qps_a > 0 and qps_b > 0
    assert found_a.shape == (5, 10) and found_b.shape == (5, 10)  # [Q, K], -1 padded
    assert (found_a[:, 0] == 7).all() and (found_b[:, 0] == 3).all()
    assert (found_a[:, 1:] == -1).all()
