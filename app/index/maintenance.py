"""The FAISS store's maintenance worker: one background thread that runs IVF-PQ training,
tombstone compaction and snapshots in turn (train > compact > snapshot), and the policy that
decides when each is due.

The worker owns only scheduling state; the tasks themselves are the store's (they need its
locks). A failed task is logged and retried no sooner than RETRY_AFTER_S later: the source of
truth (catalog + vectors) is intact, so the store keeps serving from its current index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.config import FaissStoreSettings
from app.index.ivf import MIN_IVF_ROWS, BuildStopped
from app.index.live_rows import IndexState

logger = logging.getLogger(__name__)

Task = Literal["train", "compact", "snapshot"]
# After a failed background task, wait this long before scheduling more work.
RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class Due:
    train: bool = False
    compact: bool = False
    snapshot: bool = False


def due_tasks(
    live_count: int,
    state: IndexState,
    snapshot_rows: int,
    settings: FaissStoreSettings,
    ivf_threshold: int,
) -> Due:
    """What the collection needs now: IVF-PQ training once it is big enough (or has grown
    retrain_growth-fold since the last training), compaction once tombstones exceed
    compact_ratio of the index, a snapshot every snapshot_every covered rows."""
    if state.kind == "flat":
        train = live_count >= max(ivf_threshold, MIN_IVF_ROWS)
    else:
        train = live_count >= settings.retrain_growth * max(state.ntrained_on, 1)
    compact = state.dead > 0 and state.dead > settings.compact_ratio * state.index.ntotal
    snapshot = state.covered - snapshot_rows >= settings.snapshot_every
    return Due(train, compact, snapshot)


class MaintenanceWorker:
    """Runs `run(task)` on its own thread for each requested task, one at a time."""

    def __init__(
        self,
        name: str,
        run: Callable[[Task], None],
        live_count: Callable[[], int],
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._run = run
        self._live_count = live_count
        self._on_start = on_start
        self._cond = threading.Condition()
        self._stopping = False
        self._task: Task | None = None
        self._want: dict[Task, bool] = {"train": False, "compact": False, "snapshot": False}
        self._train_retry_at = 0  # after a failed training, wait for this live count
        self._retry_after = 0.0  # time.monotonic() before which nothing is scheduled
        self._thread: threading.Thread | None = None
        self.after_task: Callable[[], None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def training(self) -> bool:
        with self._cond:
            return self._want["train"] or self._task == "train"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drop pending requests and wait for a running task (builds give up early)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def request(self, due: Due, live_count: int) -> None:
        """Ask for what is due (ignored while stopping or backing off after a failure)."""
        with self._cond:
            if self._stopping or time.monotonic() < self._retry_after:
                return
            training = self._want["train"] or self._task == "train"
            if due.train and not training and live_count >= self._train_retry_at:
                self._want["train"] = True
            if due.compact and not self._want["train"]:
                self._want["compact"] = True
            if due.snapshot:
                self._want["snapshot"] = True
            if any(self._want.values()):
                self._cond.notify_all()

    def _next_task(self) -> Task | None:
        with self._cond:
            while not (self._stopping or any(self._want.values())):
                self._cond.wait()
            if self._stopping:
                self._want = {t: False for t in self._want}
                self._cond.notify_all()
                return None
            task: Task = next(t for t in ("train", "compact", "snapshot") if self._want[t])
            self._want[task] = False
            self._task = task
            return task

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while (task := self._next_task()) is not None:
            try:
                self._run(task)
            except BuildStopped:
                logger.info("%s: %s abandoned: store closing", self._name, task)
            except Exception:  # the worker must survive; the source of truth is intact
                logger.exception(
                    "%s: background %s failed; retrying in %.0fs at the earliest",
                    self._name,
                    task,
                    RETRY_AFTER_S,
                )
                self._retry_after = time.monotonic() + RETRY_AFTER_S
                if task == "train":
                    self._train_retry_at = int(self._live_count() * 1.5) + 1
            finally:
                with self._cond:
                    self._task = None
                    self._cond.notify_all()
            if self.after_task is not None:
                self.after_task()

    def wait_for_training(self, timeout: float | None = None) -> bool:
        """Block until no training is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._want["train"] and self._task != "train", timeout
            )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._task is None and not any(self._want.values()), timeout
            )
