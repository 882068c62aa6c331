"""Groups of stored items that are copies of each other (GET /duplicates), and the copies an
upload duplicates (POST /index).

An edge joins two stored items when one's "more like this" search (`search_by_id`, top
`neighbours`, no re-ranking) returns the other with `match` true; a group is a connected
component of those edges with two or more items. The verdict is read from the hits, never
recomputed here, so the groups mean what `match` means in every search. Only the store's own
neighbour search is used (the `VectorStore` protocol), so FAISS and Milvus both serve it.

Cost: one by-id search per stored item for the first scan (docs: README "Duplicates"), then
incremental: adds and deletes through this process update the graph (an add costs one by-id
search of the new item, a delete only drops its edges). Writes this process did not see
(other replicas, bulk loaders in another process) are caught by comparing the store's count
with the graph's, and by a full rescan after `duplicates.max_age_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from app.config import DuplicateSettings
from app.errors import DuplicateScanPending, NotFound, NotReady
from app.index.store import Hit, Item, VectorStore
from app.search.match_graph import DuplicateGroup, MatchGraph, decode_cursor, page_of


class _Outcome(Protocol):
    hits: list[Hit]


class ItemSearcher(Protocol):
    """What the finder needs of the search service (a protocol: the service owns a finder,
    so importing it here would make a cycle)."""

    store: VectorStore

    async def search_by_id(
        self, item_id: str, *, include_self: bool = False, **kwargs: Any
    ) -> _Outcome: ...

    async def get_item(self, item_id: str, with_vector: bool = False) -> Item | None: ...


logger = logging.getLogger(__name__)

# Ids listed per store page while scanning.
SCAN_PAGE = 1000
# Writes noted beyond this many before the next GET /duplicates: a full rescan instead.
MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class DuplicatePage:
    groups: list[DuplicateGroup]
    next_cursor: str | None
    # All groups and all items in them, not just this page.
    total_groups: int
    total_items: int
    # Items the grouping covers (every live item when it is up to date).
    items_checked: int
    # Unix time of the last full scan of the store.
    scanned_at: float


class DuplicateFinder:
    """The match graph of one store, built on first use and kept up to date.

    Adds and deletes are noted from worker threads (`note_added`, `note_deleted`); the graph
    applies them at the next read. Scans run as background tasks on the event loop, so a slow
    scan of a large store never ties up a request: GET /duplicates waits `wait_s` for the
    first one, then answers 503 with how far it got; later rescans run while the kept graph
    answers.
    """

    def __init__(self, service: ItemSearcher, settings: DuplicateSettings) -> None:
        self.service = service
        self.settings = settings
        self._graph: MatchGraph | None = None
        self._scanned_at = 0.0
        self._notes = threading.Lock()
        self._pending_added: set[str] = set()
        self._pending_deleted: set[str] = set()
        self._refresh_task: asyncio.Task[MatchGraph] | None = None
        self._progress = (0, 0)  # (items checked, items to check) of the first scan
        # A background rescan (too old, or the store changed behind our back), when running,
        # and the writes applied to the current graph since it started, to carry over.
        self._rescan: asyncio.Task[MatchGraph] | None = None
        self._rescan_started = 0.0
        self._replay: list[tuple[str, str]] = []
        # More writes were noted than MAX_PENDING: dropped, a rescan will see them.
        self._overflow = False
        # (graph, its version, its groups): groups are recomputed only after a change.
        self._cached: tuple[MatchGraph, int, list[DuplicateGroup]] | None = None

    # ------------------------------------------------------------- writes seen by this process
    def note_added(self, ids: Iterable[str]) -> None:
        if self._idle():
            return
        with self._notes:
            self._pending_added.update(ids)
            if len(self._pending_added) > MAX_PENDING:
                # Cheaper to rescan than to search each; and bounded memory.
                self._pending_added.clear()
                self._pending_deleted.clear()
                self._overflow = True

    def note_deleted(self, item_id: str) -> None:
        if self._idle():
            return
        with self._notes:
            self._pending_deleted.add(item_id)

    def _idle(self) -> bool:
        """Nothing built yet and no scan running: the first scan will see every write."""
        task = self._refresh_task
        return self._graph is None and (task is None or task.done())

    # ------------------------------------------------------------- the copies of one item
    async def matches_of(self, item_id: str) -> list[Hit] | None:
        """The stored items `item_id` duplicates (hits with `match`, best first); None when the
        item is gone. What POST /index reports per upload."""
        try:
            outcome = await self.service.search_by_id(
                item_id, top_k=self.settings.neighbours, rerank="none"
            )
        except NotFound:
            return None
        return [h for h in outcome.hits if h.match]

    async def report(self, ids: Sequence[str]) -> list[list[Hit] | None]:
        """`matches_of` for each of `ids` just stored (POST /index). The add is durable
        already: a store that fails now gives None for that id (not checked), not an error."""
        out: list[list[Hit] | None] = []
        for item_id in ids:
            try:
                out.append(await self.matches_of(item_id) or [])
            except NotReady as exc:
                logger.warning("duplicates of %r not checked: %s", item_id, exc)
                out.append(None)
        return out

    # ------------------------------------------------------------- GET /duplicates
    async def page(self, limit: int, cursor: str | None) -> DuplicatePage:
        if cursor is not None:
            decode_cursor(cursor)  # 422 before any work
        graph = await self._current_graph()
        groups = self._groups(graph)
        chunk, next_cursor = page_of(groups, limit, cursor)
        return DuplicatePage(
            groups=chunk,
            next_cursor=next_cursor,
            total_groups=len(groups),
            total_items=sum(g.size for g in groups),
            items_checked=len(graph.nodes),
            scanned_at=self._scanned_at,
        )

    def _groups(self, graph: MatchGraph) -> list[DuplicateGroup]:
        cached = self._cached
        if cached is None or cached[0] is not graph or cached[1] != graph.version:
            cached = self._cached = (graph, graph.version, graph.groups())
        return cached[2]

    async def _current_graph(self) -> MatchGraph:
        """The graph with every noted write applied; starts (or joins) the refresh and waits
        for it at most `wait_s`."""
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.create_task(self._refresh())
        task = self._refresh_task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.wait_s)
        except TimeoutError:
            done, total = self._progress
            progress = f"{done} of {total} stored items checked so far" if total else "started"
            raise DuplicateScanPending(
                f"grouping duplicates: {progress}; the scan goes on in the background, retry "
                "shortly"
            ) from None

    async def _refresh(self) -> MatchGraph:
        """The first scan (callers wait for it), then: adopt a finished background rescan,
        apply the noted writes, and start a rescan when the graph is too old or the store's
        count says another process wrote to it (answers come from the kept graph meanwhile)."""
        if self._graph is None:
            with self._notes:  # the scan covers every write noted before it starts
                self._pending_added.clear()
                self._pending_deleted.clear()
            started = time.time()
            self._graph, self._scanned_at = await self._scan(report_progress=True), started
        self._adopt_rescan()
        graph = self._graph
        await self._apply_notes(graph)
        if self._rescan is None:
            live = await run_in_threadpool(len, self.service.store)
            too_old = (
                self.settings.max_age_s > 0
                and time.time() - self._scanned_at > self.settings.max_age_s
            )
            if too_old or self._overflow or live != len(graph.nodes):
                logger.info(
                    "duplicates: rescanning in the background (%s)",
                    "the last scan is too old"
                    if too_old
                    else f"{MAX_PENDING}+ writes since the last call"
                    if self._overflow
                    else f"the store holds {live} items, the match graph {len(graph.nodes)}: "
                    "written by another process",
                )
                self._overflow = False
                self._replay = []
                self._rescan_started = time.time()
                self._rescan = asyncio.create_task(self._scan(report_progress=False))
        return graph

    def _adopt_rescan(self) -> None:
        """Swap in a finished background rescan, with the writes applied since it started
        carried over from the current graph (their edges were searched already)."""
        task, old = self._rescan, self._graph
        if task is None or not task.done() or old is None:
            return
        self._rescan = None
        if task.cancelled() or task.exception() is not None:
            logger.warning("duplicates: background rescan failed: %r", task.exception())
            return
        new = task.result()
        for kind, item_id in self._replay:
            new.remove(item_id)
            if kind == "add" and item_id in old.nodes:
                new.nodes[item_id] = old.nodes[item_id]
                for other, score in old.edges.get(item_id, {}).items():
                    new.add_edge(item_id, other, score)
        self._replay = []
        self._graph, self._scanned_at = new, self._rescan_started

    async def _scan(self, report_progress: bool) -> MatchGraph:
        """One by-id search per stored item, into a new graph."""
        t0 = time.perf_counter()
        graph = MatchGraph()
        total = await run_in_threadpool(len, self.service.store)
        if report_progress:
            self._progress = (0, total)
        cursor: str | None = None
        while True:
            page = await run_in_threadpool(self.service.store.list_items, SCAN_PAGE, cursor)
            items = [(i.id, i.created_at) for i in page.items]
            await self._search_all(graph, items, total if report_progress else None)
            cursor = page.next_cursor
            if cursor is None:
                break
        logger.info(
            "duplicates: scanned %d items in %.1f s, %d groups",
            len(graph.nodes),
            time.perf_counter() - t0,
            len(graph.groups()),
        )
        return graph

    async def _apply_notes(self, graph: MatchGraph) -> None:
        with self._notes:
            added, deleted = self._pending_added, self._pending_deleted
            self._pending_added, self._pending_deleted = set(), set()
        if self._rescan is not None:  # to carry over into the rescan's graph
            self._replay += [("del", i) for i in deleted] + [("add", i) for i in added]
        for item_id in deleted:
            graph.remove(item_id)
        if added:
            items = []
            for item_id in sorted(added):
                item = await self.service.get_item(item_id)
                if item is None:
                    graph.remove(item_id)  # added, then deleted before we got to it
                else:
                    items.append((item_id, item.created_at))
            await self._search_all(graph, items, None, replace=True)

    async def _search_all(
        self,
        graph: MatchGraph,
        items: list[tuple[str, float]],
        total: int | None,
        replace: bool = False,
    ) -> None:
        """By-id searches of `items`, `concurrency` at a time; each one's matches into the
        graph (an item deleted meanwhile is left out). With `total`, progress is reported."""
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(item_id: str, created_at: float) -> None:
            async with limit:
                hits = await self.matches_of(item_id)
            if hits is None:
                graph.remove(item_id)
            else:
                graph.set_matches(item_id, created_at, hits, replace=replace)
            if total is not None:
                self._progress = (self._progress[0] + 1, total)

        await asyncio.gather(*(one(i, c) for i, c in items))

    async def aclose(self) -> None:
        for task in (self._refresh_task, self._rescan):
            if task is not None and not task.done():
                task.cancel()
                # Shutting down: whatever the cancelled scan raised no longer matters.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
