"""The `VectorStore` protocol and the value types it speaks.

The API and `app.search` depend only on this module, so any backend (`FaissStore` embedded in
the process, `MilvusStore` on a Milvus server; `app.index.factory` picks one from settings)
serves them unchanged. Vectors crossing this boundary are float32 and
L2-normalised by the caller; scores are inner products, i.e. cosine similarities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from app.errors import InvalidRequest
from app.index.filters import MetadataFilter

# Backend-specific name of the index in use: "flat" / "ivfpq" for FAISS, the Milvus index
# type ("HNSW", "IVF_PQ", ...) for Milvus.
IndexType = str


class InvalidVectors(InvalidRequest, ValueError):
    """Bad input to a store call (shape, dim, non-finite values, duplicate or empty ids).

    A `ValueError` for library callers and an `InvalidRequest` (-> 422) for the API layer.
    """


@dataclass(slots=True)
class Hit:
    """One search result. `score` is the exact inner product with the stored (fp16) vector.

    Mutable on purpose: the search service sets `match` and `rerank_score`, and callers drop
    `vector` before replying. `score` stays the cosine whatever the re-ranking.
    """

    id: str
    score: float
    metadata: dict[str, Any] | None
    # Storage row of the vector; stable for the life of the item (a re-add gets a new row).
    row: int
    # [D] float32, the stored vector (fp16-rounded), when the search asked for vectors.
    vector: np.ndarray | None = None
    # The copy verdict (app/search/verdict.py): the item is a copy of the query.
    match: bool = False
    # SuperGlobal's score when the search was re-ranked (it orders the hits), else None.
    rerank_score: float | None = None


@dataclass(slots=True)
class Item:
    id: str
    metadata: dict[str, Any] | None
    # [D] float32 (fp16-rounded) when requested, else None.
    vector: np.ndarray | None
    # Unix time of the add that stored this version of the item.
    created_at: float
    # True when a JPEG thumbnail was stored with this version of the item (image uploads).
    has_thumbnail: bool = False


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of `list_items`: items in ascending id order (code-point order of the UTF-8
    id), without vectors. `next_cursor` is opaque to clients (None on the last page); `total`
    counts all live items that match the id prefix, not just this page."""

    items: list[Item]
    next_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    index_type: IndexType
    # Live (searchable) items.
    ntotal: int
    # Vector rows ever written (live + tombstoned); = ntotal where the backend does not say.
    rows: int
    # Rows whose item was deleted or replaced (0 where the backend does not say).
    tombstones: int
    # Generation of the last durable index snapshot (0 before the first, or no snapshots).
    generation: int
    dim: int
    # True while an index is being built in the background.
    training: bool
    index_params: dict[str, Any] = field(default_factory=dict)
    # Which backend answers ("faiss" or "milvus").
    backend: str = "faiss"


@runtime_checkable
class VectorStore(Protocol):
    """What the service needs from a vector store.

    Contract: `add` and `delete` are durable when they return (thumbnails included); re-adding
    an id replaces it (item, metadata and thumbnail); `delete` removes the thumbnail too;
    `search` returns, per query, at most k hits sorted by decreasing exact score.
    """

    @property
    def dim(self) -> int: ...

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
        *,
        created_at: Sequence[float] | None = None,
    ) -> list[str]:
        """`created_at`: one unix time per id (default now), for copies of existing items."""
        ...

    def delete(self, id: str) -> bool: ...

    def get(self, id: str, with_vector: bool = False) -> Item | None: ...

    def get_many(self, ids: Sequence[str], with_vectors: bool = False) -> list[Item]:
        """The live items among `ids`, in the order of `ids` (unknown ids left out); one
        round trip where the backend has a server (copies, bulk reads)."""
        ...

    def contains(self, ids: Sequence[str]) -> set[str]: ...

    def thumbnail(self, id: str) -> bytes | None:
        """The JPEG bytes stored with the live item `id`, or None (unknown id or none stored)."""
        ...

    def list_items(
        self, limit: int, cursor: str | None = None, id_prefix: str | None = None
    ) -> ItemPage:
        """Live items after `cursor` in ascending id order; stable under concurrent adds and
        deletes (the cursor encodes the last id returned). A malformed cursor raises
        InvalidRequest."""
        ...

    def __len__(self) -> int: ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        candidate_factor: int | None = None,
        with_vectors: bool = False,
        filter: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """With `filter`, only items whose metadata match it are candidates (applied inside the
        index, so up to k matching hits come back, not a post-filtered subset)."""
        ...

    def stats(self) -> StoreStats: ...

    def availability(self) -> str | None:
        """None while the store can serve; else why not (e.g. its server is unreachable).
        Cheap enough for a readiness probe."""
        ...

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Block until background index builds are done (False on timeout); bulk loaders
        call it before reporting."""
        ...

    def close(self) -> None: ...
