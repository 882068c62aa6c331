"""The search pipeline without FastAPI: embed -> ANN -> exact re-score -> re-rank -> hits.

Routes call it, and so do scripts (bulk indexing, evaluation), so what we evaluate is what we
serve. Blocking store calls run in worker threads; the event loop never waits on an fsync.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.errors import InvalidRequest, NotFound
from app.index.filters import MetadataFilter
from app.index.store import Hit, Item, ItemPage, StoreStats, VectorStore
from app.inference.embedder import Embedder
from app.inference.working import DecodedImage
from app.metrics import Metrics
from app.search.duplicates import DuplicateFinder
from app.search.rerank import superglobal_rerank
from app.search.verdict import CopyVerdict, VerdictRule, default_rule
from app.search.verify import QueryImage, query_image_from_jpeg, query_view
from app.thumbnails import make_thumbnail, working_thumbnail

logger = logging.getLogger(__name__)

RerankMode = Literal["none", "superglobal"]

@dataclass
class SearchOutcome:
    hits: list[Hit]
    # The re-ranking that ran ("none" when SuperGlobal was asked for but skipped).
    rerank: RerankMode
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Why a requested SuperGlobal re-ranking did not run (None when it ran or was not asked).
    rerank_skipped: str | None = None


@dataclass
class IndexOutcome:
    # The stored ids, in input order.
    ids: list[str]
    # Those of `ids` that replaced an item already stored under the same id (best effort:
    # checked just before the add, so a concurrent writer of the same id can slip between).
    replaced: list[str]


def content_id(data: bytes) -> str:
    """Default id of an uploaded image: its SHA-256, so re-uploading the same bytes replaces."""
    return hashlib.sha256(data).hexdigest()


class SearchService:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        settings: Settings,
        metrics: Metrics | None = None,
        verdict_rule: VerdictRule | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.verdict = CopyVerdict(
            store, verdict_rule or default_rule(), settings.verdict.cache_mb << 20
        )
        side = self.verdict.rule.working_side
        if not settings.thumbnails.enabled or settings.thumbnails.long_side < side:
            # The stored side of the geometric check is the thumbnail: without one (or with a
            # smaller one) copies are found less often than GET /health's measured rates say.
            logger.warning(
                "copy verdict: thumbnails are %s; the verdict was measured with %d px ones "
                "(SIMSEARCH_THUMBNAILS__LONG_SIDE), so it will miss more copies",
                "off" if not settings.thumbnails.enabled
                else f"{settings.thumbnails.long_side} px", side,
            )
        # Groups of stored copies (GET /duplicates); told of every add and delete below.
        self.duplicates = DuplicateFinder(self, settings.duplicates)

    # ---------------------------------------------------------------- validation
    def check_search_params(
        self,
        top_k: int,
        nprobe: int | None,
        score_threshold: float | None,
        top_m: int | None,
    ) -> None:
        lim, idx, rr = self.settings.limits, self.settings.index, self.settings.rerank
        if not 1 <= top_k <= lim.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {lim.max_top_k}; got {top_k}")
        if nprobe is not None and not 1 <= nprobe <= idx.max_nprobe:
            raise InvalidRequest(f"nprobe must be between 1 and {idx.max_nprobe}; got {nprobe}")
        if score_threshold is not None and not (
            math.isfinite(score_threshold) and -1.0 <= score_threshold <= 1.0
        ):
            raise InvalidRequest(
                f"score_threshold must be a cosine similarity in [-1, 1]; got {score_threshold}"
            )
        if top_m is not None and not 2 <= top_m <= rr.max_top_m:
            raise InvalidRequest(f"rerank_top_m must be between 2 and {rr.max_top_m}; got {top_m}")

    @staticmethod
    def check_rerank(rerank: RerankMode, top_m: int | None) -> None:
        """rerank_top_m only means something to SuperGlobal: refuse it rather than ignore it."""
        if top_m is not None and rerank != "superglobal":
            raise InvalidRequest(
                "rerank_top_m applies only with rerank='superglobal'; "
                f"got rerank={rerank!r} (drop rerank_top_m, or set rerank='superglobal')"
            )

    def check_options(
        self,
        top_k: int = 10,
        rerank: RerankMode = "none",
        nprobe: int | None = None,
        score_threshold: float | None = None,
        top_m: int | None = None,
        **_: Any,
    ) -> None:
        """Both option checks (422 with what is accepted), on the keyword options every search
        entry point takes; routes call it before reading an upload."""
        self.check_search_params(top_k, nprobe, score_threshold, top_m)
        self.check_rerank(rerank, top_m)

    def check_vector(
        self, vector: Sequence[float] | np.ndarray, what: str = "vector"
    ) -> np.ndarray:
        """[D] list -> unit float32 [D]; 422 for the wrong dimension, NaN/inf or a zero vector."""
        arr = np.asarray(vector, dtype=np.float32)
        dim = self.embedder.dim
        if arr.ndim != 1 or arr.shape[0] != dim:
            raise InvalidRequest(f"{what} must have {dim} numbers; got shape {list(arr.shape)}")
        if not np.all(np.isfinite(arr)):
            raise InvalidRequest(
                f"{what} contains NaN or infinity; only finite numbers are accepted"
            )
        norm = float(np.linalg.norm(arr))
        if norm == 0.0:
            raise InvalidRequest(f"{what} is all zeros; it has no direction to search by")
        return arr / norm

    # ---------------------------------------------------------------- search
    async def search_image(
        self,
        data: bytes,
        *,
        top_k: int = 10,
        rerank: RerankMode = "none",
        nprobe: int | None = None,
        score_threshold: float | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        top_m: int | None = None,
        filter: MetadataFilter | None = None,
    ) -> SearchOutcome:
        self.check_options(top_k, rerank, nprobe, score_threshold, top_m)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        side = self.verdict.rule.working_side

        def verdict_view(decoded: DecodedImage) -> QueryImage:
            # The copy verdict's view of the query; runs in the decode thread.
            return query_view(decoded, side, bbox)

        embedded = await self.embedder.embed_upload(
            data, bbox=bbox, timings=timings, views={"verdict": verdict_view}
        )
        query = embedded.vector
        embed_s = time.perf_counter() - t0
        timings["embed"] = embed_s * 1e3
        self._observe("embed", embed_s)
        outcome = await run_in_threadpool(
            self.search_vector_sync,
            query,
            top_k=top_k,
            rerank=rerank,
            nprobe=nprobe,
            score_threshold=score_threshold,
            top_m=top_m,
            filter=filter,
            query_image=cast(QueryImage, embedded.views["verdict"]),
        )
        outcome.timings_ms = {**timings, **outcome.timings_ms}
        outcome.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        return outcome

    async def search_vector(self, vector: np.ndarray, **kwargs: Any) -> SearchOutcome:
        self.check_options(**kwargs)
        return await run_in_threadpool(self.search_vector_sync, vector, **kwargs)

    async def search_by_id(
        self, item_id: str, *, include_self: bool = False, **kwargs: Any
    ) -> SearchOutcome:
        """More like this: search with the stored vector of `item_id` (404 if unknown). The
        item itself is left out of the results unless `include_self`."""
        self.check_options(**kwargs)
        t0 = time.perf_counter()
        item = await run_in_threadpool(self.store.get, item_id, True)
        if item is None or item.vector is None:
            raise NotFound(f"no item with id {item_id!r}")
        vector = np.asarray(item.vector, dtype=np.float32)  # [D], fp16-rounded
        query = vector / max(float(np.linalg.norm(vector)), 1e-12)
        exclude = None if include_self else item_id
        # The item's thumbnail is its picture for the copy verdict, as on the stored side.
        thumb = await run_in_threadpool(self.store.thumbnail, item_id)
        image = (None if thumb is None
                 else query_image_from_jpeg(thumb, self.verdict.rule.working_side))
        outcome = await run_in_threadpool(
            self.search_vector_sync, query, exclude_id=exclude, query_image=image,
            query_item_id=item_id, **kwargs
        )
        outcome.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        return outcome

    def search_vector_sync(
        self,
        query: np.ndarray,
        *,
        top_k: int = 10,
        rerank: RerankMode = "none",
        nprobe: int | None = None,
        score_threshold: float | None = None,
        top_m: int | None = None,
        filter: MetadataFilter | None = None,
        exclude_id: str | None = None,
        query_image: QueryImage | None = None,
        query_item_id: str | None = None,
    ) -> SearchOutcome:
        """query: unit float32 [D]. Blocking; call from a worker thread. `filter` is applied
        inside the store (all hits match it); `exclude_id` is dropped from the hits (one
        extra candidate is fetched for it). `query_image` is the query's picture for the copy
        verdict (None: the verdict rests on the cosine alone); `query_item_id` says it is the
        thumbnail of that stored item (a by-id search), whose features the verdict caches.

        Every hit's `score` is its cosine with the query (so `score_threshold` filters on the
        score the caller sees) and `match` is the copy verdict, decided on the candidates in
        cosine order before any re-ranking: SuperGlobal changes the order (and sets
        `rerank_score`), never a score or a verdict."""
        timings: dict[str, float] = {}
        m = top_m or self.settings.rerank.top_m
        skipped = self._superglobal_skip_reason(m) if rerank == "superglobal" else None
        if skipped is not None:
            rerank = "none"
        fetch = max(top_k, m) if rerank == "superglobal" else top_k
        if exclude_id is not None:
            fetch += 1
        t0 = time.perf_counter()
        search_kwargs: dict[str, Any] = {}
        if filter is not None:
            search_kwargs["filter"] = filter
        hits = self.store.search(
            query[None, :],
            fetch,
            nprobe=nprobe,
            score_threshold=score_threshold,
            with_vectors=rerank == "superglobal",
            **search_kwargs,
        )[0]
        if query_image is not None and query_item_id is not None:
            own = next((h for h in hits if h.id == query_item_id), None)
            if own is not None:  # its row names the version whose thumbnail is the query
                self.verdict.share_item_features(query_image, own.id, own.row)
        if exclude_id is not None:
            hits = [h for h in hits if h.id != exclude_id][: fetch - 1]
        ann_s = time.perf_counter() - t0
        timings["ann_rescore"] = ann_s * 1e3
        self._observe("ann_rescore", ann_s)
        t_verify = time.perf_counter()
        hits.sort(key=lambda h: -h.score)  # the verdict verifies the best cosines first
        self.verdict.judge(hits, query_image)
        verify_s = time.perf_counter() - t_verify
        timings["verify"] = verify_s * 1e3
        self._observe("verify", verify_s)
        if rerank == "superglobal" and len(hits) >= 2:
            t1 = time.perf_counter()
            hits = self._superglobal(query, hits, m)
            rr_s = time.perf_counter() - t1
            timings["rerank"] = rr_s * 1e3
            self._observe("rerank", rr_s)
        for hit in hits:
            hit.vector = None  # never leak vectors into responses by accident
        return SearchOutcome(hits=hits[:top_k], rerank=rerank, timings_ms=timings,
                             rerank_skipped=skipped)

    def _superglobal_skip_reason(self, m: int) -> str | None:
        """SuperGlobal refines the top-M with each candidate's neighbours inside that list; in a
        store not much larger than M the list is the whole collection and the refinement
        measurably lowered recall@1 of copies (docs/EVALUATION.md), so it is skipped there."""
        size = len(self.store)
        need = max(m, self.settings.rerank.min_store_items)
        if size < need:
            return (f"the store holds {size} items, fewer than {need} (max of rerank top_m {m} "
                    f"and rerank.min_store_items {self.settings.rerank.min_store_items}); "
                    "results are in plain cosine order")
        return None

    def _superglobal(self, query: np.ndarray, hits: list[Hit], m: int) -> list[Hit]:
        """Re-rank the exact top-M (initial order) with SuperGlobal; the tail keeps its order."""
        head, tail = hits[:m], hits[m:]
        cands = np.stack([np.asarray(h.vector, dtype=np.float32) for h in head])  # [M, D]
        rr = self.settings.rerank
        order, scores = superglobal_rerank(query, cands, k=rr.k, beta=rr.beta)
        reranked = []
        for pos, score in zip(order, scores, strict=True):
            hit = head[int(pos)]
            hit.rerank_score = float(score)  # `score` stays the cosine (one scale)
            reranked.append(hit)
        return reranked + tail

    def _observe(self, stage: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.stage_seconds.labels(stage).observe(seconds)

    # ---------------------------------------------------------------- indexing
    async def index_images(
        self,
        images: Sequence[bytes],
        ids: Sequence[str | None],
        metadata: Sequence[dict[str, Any] | None],
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> IndexOutcome:
        """Embed every image (all scales batched together), then one durable store add.
        Thumbnails are made here (when enabled, from the same decode) unless the caller
        brings them."""
        if thumbnails is None:
            vectors, thumbnails = await self.embed_for_index(images)  # [N, D]
        else:
            vectors = await self.embed_images(images)
        final_ids = [
            i if i is not None else content_id(b) for i, b in zip(ids, images, strict=True)
        ]
        return await self.index_vectors(final_ids, vectors, list(metadata), thumbnails)

    def make_thumbnails(self, images: Sequence[bytes]) -> list[bytes | None] | None:
        """JPEG thumbnails of accepted uploads (None when turned off). Blocking."""
        settings = self.settings.thumbnails
        if not settings.enabled:
            return None
        max_pixels = self.settings.limits.max_pixels
        return [make_thumbnail(data, settings, max_pixels) for data in images]

    async def embed_for_index(
        self,
        images: Sequence[bytes],
        timings: dict[str, float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, list[bytes | None] | None]:
        """Uploads -> ([N, D] descriptors, JPEG thumbnails or None when turned off), each image
        decoded once: the thumbnail is a view of the embedder's working image. An error names
        the failing image by labels[i] (e.g. its file name)."""
        settings = self.settings.thumbnails
        if not settings.enabled:
            return await self.embedder.embed_many(list(images), timings, labels), None

        def thumbnail(decoded: DecodedImage) -> bytes | None:
            return working_thumbnail(decoded.pixels, settings, decoded.upload_size)

        vectors, views = await self.embedder.embed_uploads(
            list(images), timings, views={"thumbnail": thumbnail}, labels=labels)
        return vectors, [cast("bytes | None", v["thumbnail"]) for v in views]

    async def embed_images(
        self, images: Sequence[bytes], labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """Uploaded images -> [N, D] float32 unit descriptors (row i for images[i]); an error
        names the failing image by labels[i] (e.g. its file name)."""
        return await self.embedder.embed_many(list(images), labels=labels)

    async def index_vectors(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None],
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> IndexOutcome:
        """One durable add (thumbnails stored with their items); reports which ids replaced
        an existing item."""
        return await run_in_threadpool(
            self.index_vectors_sync, list(ids), vectors, list(metadata), thumbnails
        )

    def index_vectors_sync(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadata: list[dict[str, Any] | None],
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> IndexOutcome:
        existing = self.store.contains(ids)
        if thumbnails is None:
            stored = self.store.add(ids, vectors, metadata)
        else:
            stored = self.store.add(ids, vectors, metadata, list(thumbnails))
        self.duplicates.note_added(stored)
        if self.metrics is not None:
            self.metrics.indexed.inc(len(stored))
        return IndexOutcome(ids=stored, replaced=[i for i in stored if i in existing])

    # ---------------------------------------------------------------- items
    async def get_item(self, item_id: str, with_vector: bool = False) -> Item | None:
        return await run_in_threadpool(self.store.get, item_id, with_vector)

    async def delete_item(self, item_id: str) -> bool:
        deleted = await run_in_threadpool(self.store.delete, item_id)
        if deleted:
            self.duplicates.note_deleted(item_id)
        return bool(deleted)

    def store_stats(self) -> StoreStats:
        return self.store.stats()

    async def list_items(
        self, limit: int, cursor: str | None = None, id_prefix: str | None = None
    ) -> ItemPage:
        return await run_in_threadpool(self.store.list_items, limit, cursor, id_prefix)

    async def thumbnail(self, item_id: str) -> bytes | None:
        return await run_in_threadpool(self.store.thumbnail, item_id)

    async def exists(self, item_id: str) -> bool:
        return bool(await run_in_threadpool(self.store.contains, [item_id]))
