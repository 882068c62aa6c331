"""The index command's progress lines: rate and time left from a controlled clock, one line
each when the output is a log, one rewritten line on a terminal."""

from __future__ import annotations

import io

from simsearch_client.bulk import BulkReport
from simsearch_client.progress import ProgressPrinter, duration


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_duration() -> None:
    assert duration(0.4) == "0 s" and duration(59) == "59 s"
    assert duration(125) == "2 min 05 s" and duration(7620) == "2 h 07 min"


def test_log_output_is_separate_lines_with_rate_and_time_left() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = ProgressPrinter(out, interval_s=5.0, clock=clock)
    report = BulkReport(total=100, skipped=20)
    progress(report)  # before anything is sent
    clock.now += 2.0
    report.indexed = 10
    progress(report)  # 2 s after the last line: held back
    clock.now += 3.0
    report.indexed, report.failed = 19, [("x.jpg", "broken")]
    progress(report)  # 20 sent in 5 s: 4/s; 60 left: 15 s
    clock.now += 1.0
    report.indexed = 79
    progress(report)  # finished: always printed
    progress.close()
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("20/100 done") and "rate not known yet" in lines[0]
    assert lines[1] == (
        "40/100 done: 19 indexed, 20 skipped (already stored), 1 failed; 4.0 images/s, 15 s left"
    )
    assert lines[2].startswith("100/100 done") and "13.3 images/s, 0 s left" in lines[2]
    assert progress.report is report


def test_terminal_output_rewrites_one_line_and_ends_it() -> None:
    out, clock = _Terminal(), _Clock()
    progress = ProgressPrinter(out, clock=clock)
    report = BulkReport(total=4)
    progress(report)
    for i in range(1, 5):
        clock.now += 1.0
        report.indexed = i
        progress(report)
    progress.close()
    text = out.getvalue()
    assert text.count("\r") == 5 and text.endswith(
        "4/4 done: 4 indexed, 0 skipped (already stored), 0 failed; 1.0 images/s, 0 s left\x1b[K\n"
    )


def test_quiet_prints_nothing_but_keeps_the_report() -> None:
    out = io.StringIO()
    progress = ProgressPrinter(out, quiet=True)
    report = BulkReport(total=3, indexed=1)
    progress(report)
    progress.close()
    assert out.getvalue() == "" and progress.report is report
