"""workbench.bench.common.run_json_child: children print one JSON line or an indented object."""

from __future__ import annotations

import pytest

from workbench.bench.common import run_json_child


def test_reads_the_last_line_after_progress_output() -> None:
    code = "print('progress'); print('{\"a\": 1}')"
    assert run_json_child(["-c", code]) == {"a": 1}


def test_reads_an_indented_object_spanning_lines() -> None:
    code = "import json; print(json.dumps({'a': [1, 2], 'b': {'c': 3}}, indent=2))"
    assert run_json_child(["-c", code]) == {"a": [1, 2], "b": {"c": 3}}


def test_a_failing_child_raises_with_its_exit_code() -> None:
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_json_child(["-c", "raise SystemExit(3)"])
