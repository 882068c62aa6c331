"""The `index` command's progress: counts, rate and time left, on one rewritten line in a
terminal and as separate lines (at most one per `interval_s`) when stderr is a file or a pipe,
so logs stay readable instead of one long line joined by carriage returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from simsearch_client.bulk import BulkReport

# A terminal line is cheap to rewrite; a log line is not.
TTY_INTERVAL_S = 0.2
LOG_INTERVAL_S = 5.0


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressPrinter:
    """A `progress` callback for `index_folder`. It also keeps the latest report, so a caller
    can say how far a run got when it stops early (also with `quiet`)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        quiet: bool = False,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        default = TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S
        self.interval_s = default if interval_s is None else interval_s
        self.clock = clock
        self.report: BulkReport | None = None
        self._start: float | None = None
        self._last_print: float | None = None
        self._open_line = False

    def line(self, report: BulkReport, now: float) -> str:
        """Counts, then the rate of this run (images sent per second; skipped ones are
        not work) and the time left at that rate."""
        done = report.indexed + report.skipped + len(report.failed)
        sent = report.indexed + len(report.failed)
        elapsed = now - (self._start if self._start is not None else now)
        if sent and elapsed > 0:
            rate = sent / elapsed
            left = report.total - done
            return f"{report.line()}; {rate:.1f} images/s, {duration(left / rate)} left"
        return f"{report.line()}; rate not known yet"

    def __call__(self, report: BulkReport) -> None:
        now = self.clock()
        if self._start is None:
            self._start = now  # the first call comes before any image is sent
        self.report = report
        if self.quiet:
            return
        finished = report.indexed + report.skipped + len(report.failed) >= report.total
        due = self._last_print is None or now - self._last_print >= self.interval_s
        if not (finished or due):
            return
        self._last_print = now
        if self.tty:
            # \x1b[K clears what a longer earlier line left to the right.
            self.stream.write(f"\r{self.line(report, now)}\x1b[K")
            self._open_line = True
        else:
            self.stream.write(self.line(report, now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the terminal line, if one is open."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
