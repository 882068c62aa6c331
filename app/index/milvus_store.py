"""`MilvusStore`: the `VectorStore` on a Milvus server, for collections beyond one machine and
for stateless API replicas (any number of API processes share one collection).

Collection schema (one collection per deployment, `store.milvus.collection`):
    id            VARCHAR(2048) primary key: the external id (up to 512 characters of up to
                  4 UTF-8 bytes; Milvus counts VARCHAR length in bytes)
    vector        FLOAT_VECTOR(dim): the fp16-rounded unit vector, so scores equal the FAISS
                  store's exact scores
    metadata      JSON object ({} when the item has none; `has_metadata` tells them apart)
    has_metadata  BOOL
    thumbnail     VARCHAR(65535): base64 of the JPEG thumbnail ("" = none); Milvus 2.3 has no
                  binary scalar type, so thumbnails are limited to MAX_THUMBNAIL_BYTES
    created_at    DOUBLE: unix time of the add
The collection description records {"simsearch": 1, "model_sha256", "dim"}: a collection
built with another model (or dim) is refused with ArtifactMismatch, as the FAISS store does.

Metric inner product; index type and search breadth from `MilvusSettings` (HNSW by default;
IVF_PQ candidates are re-scored exactly from the stored vectors, as the FAISS path does,
because PQ distances alone reached recall@10 0.44 at 100k x 512).

Writes. `add` is one `upsert` (replace = delete + insert under one timestamp): it returns once
the proxy has written the batch to Milvus's log (the message queue: rocksmq on the standalone
server's disk, Pulsar/Kafka in a cluster). From then on Milvus promises the write survives a
crash of any Milvus process (the log is replayed on restart; segments are flushed to object
storage later), so the API acknowledges (201) only after `upsert` returns.

Consistency. Milvus makes a read see a write once the query nodes have consumed the log up to
the read's guarantee timestamp; the consumed position advances with the time tick
(`proxy.timeTickInterval`, 200 ms by default), so a Strong read (guarantee = now) waits one
to two ticks (measured on 2.3.5, 1,000 rows: query p50 199 ms at 200 ms ticks, 19.6 ms at
10 ms, 10.3 ms at 5 ms; 2.0 ms at Bounded).
With `store.milvus.consistency` Strong (default) an acknowledged add or delete is seen by every
later read through any replica; `store.milvus.strong_wait` says who waits for the tick:
  "write" (default): after the upsert/delete returns, one Strong read (of no rows) waits
      until the query nodes have consumed the write, and only then is it acknowledged.
      Reads use Bounded: they are served at the query nodes' consumed position, which is
      already past every acknowledged write, and wait only when it lags by more than
      Milvus's graceful time (5 s, e.g. while segments replay after a restart). A search
      costs one round trip instead of one plus two ticks; an add or delete costs the same
      as before (its duplicate check no longer waits, its acknowledgement does). This
      relies on every read reaching the query node that consumed the write: true with one
      in-memory replica per collection, which is what `load_collection` here asks for.
  "read": every read is Milvus Strong; writes return as soon as the log has them.
Bounded/Session/Eventually are passed to Milvus as they are, and writes do not wait.

Availability. When the server is unreachable, calls raise StoreUnavailable (-> 503 with
Retry-After) after `store.milvus.timeout_s`; `availability()` reports why for /health/ready. The
client reconnects by itself when the server is back; a store opened while the server was
down finishes its setup (and the model check) on the first call that reaches it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from app.config import IndexSettings, MilvusSettings
from app.errors import ArtifactMismatch, StoreUnavailable
from app.index import milvus_expr
from app.index.filters import MetadataFilter
from app.index.paging import decode_cursor, encode_cursor
from app.index.store import Hit, InvalidVectors, Item, ItemPage, StoreStats
from app.index.validation import (
    as_matrix,
    check_ids,
    check_limit,
    check_search_args,
    check_thumbnails,
    metadata_json,
    to_float16,
)

logger = logging.getLogger(__name__)

MAX_ID_BYTES = 2048
MAX_THUMBNAIL_BYTES = 49_149  # base64 of it fits VARCHAR(65535)
# Milvus refuses limit + offset above 16384 per query/search.
_MAX_RESULT_WINDOW = 16384
# Ids per `id in [...]` expression.
_IDS_PER_QUERY = 1000
# Rows per upsert call: 500 x (512 x 4 B vector + a 64 KiB thumbnail) ~ 33 MiB stays inside
# the 64 MiB gRPC message limit of Milvus's default configuration.
_UPSERT_BATCH = 500
# How long an availability answer is reused (readiness probes may come often).
_AVAILABILITY_TTL_S = 1.0
# How long `wait_for_index` waits, after the build, for the query nodes to serve the indexed
# segments (the handover took ~12 s on a 2-core machine).
_HANDOFF_WAIT_S = 120.0
_IDENTITY_KEY = "simsearch"
_ITEM_FIELDS = ["id", "metadata", "has_metadata", "created_at", "thumbnail"]

T = TypeVar("T")


def _milvus_errors() -> tuple[type[BaseException], ...]:
    from pymilvus.exceptions import MilvusException

    try:
        import grpc

        return (MilvusException, grpc.RpcError, ConnectionError)
    except ImportError:  # pragma: no cover - pymilvus depends on grpcio
        return (MilvusException, ConnectionError)


def recorded_identity(settings: MilvusSettings) -> tuple[int, str | None] | None:
    """(dim, model sha256) recorded by the collection of `settings`; None when there is no
    such collection. ArtifactMismatch when the collection was not created by this service."""
    from pymilvus import MilvusClient

    client = MilvusClient(
        uri=settings.uri,
        token=settings.token.get_secret_value(),
        db_name=settings.database,
        timeout=settings.timeout_s,
        dedicated=True,
    )
    try:
        if not client.has_collection(settings.collection, timeout=settings.timeout_s):
            return None
        info = client.describe_collection(settings.collection, timeout=settings.timeout_s)
    finally:
        client.close()
    identity, dim = _identity_of(info, settings.collection)
    return dim, identity.get("model_sha256")


def _identity_of(info: dict[str, Any], collection: str) -> tuple[dict[str, Any], int]:
    """(the identity record, the vector dim) of a described collection; ArtifactMismatch
    when its description holds no record of this service (another program's collection)."""
    try:
        identity = json.loads(info.get("description") or "")
    except ValueError:
        identity = None
    if not isinstance(identity, dict) or identity.get(_IDENTITY_KEY) != 1:
        raise ArtifactMismatch(
            f"milvus collection {collection} was not created by this service (no model record "
            "in its description); choose another SIMSEARCH_STORE__MILVUS__COLLECTION"
        )
    dims = [f.get("params", {}).get("dim") for f in info["fields"] if f.get("name") == "vector"]
    raw_dim = dims[0] if dims and dims[0] is not None else identity.get("dim")
    if raw_dim is None:
        raise ArtifactMismatch(f"milvus collection {collection} records no vector dimension")
    return identity, int(raw_dim)


class MilvusStore:
    """`VectorStore` over one Milvus collection; see the module doc. Open with `open`."""

    backend = "milvus"

    def __init__(
        self,
        settings: MilvusSettings,
        dim: int,
        index_settings: IndexSettings,
        model_sha256: str | None,
    ) -> None:
        self.settings = settings
        self.index_settings = index_settings
        self._dim = dim
        self.model_sha256 = model_sha256
        self._collection = settings.collection
        self._timeout = settings.timeout_s
        self._consistency = settings.consistency
        # Writes wait for visibility and reads do not (see the module doc), or the reverse.
        self._confirm_writes = settings.consistency == "Strong" and settings.strong_wait == "write"
        self._read_level = "Bounded" if self._confirm_writes else settings.consistency
        self._errors = _milvus_errors()
        self._client: Any = None
        self._setup_lock = threading.Lock()
        self._ready = False
        self._closed = False
        self._availability: tuple[float, str | None] = (0.0, None)

    @property
    def read_consistency(self) -> str:
        """The Milvus consistency level reads are issued with (see the module doc)."""
        return self._read_level

    # ------------------------------------------------------------------ open / setup
    @classmethod
    def open(
        cls,
        settings: MilvusSettings,
        dim: int,
        index_settings: IndexSettings,
        model_sha256: str | None = None,
    ) -> MilvusStore:
        """Connect, create the collection if missing, check its model and load it.

        Raises ArtifactMismatch for a collection of another model or dim. An unreachable
        server is not an error here: the store reports itself unavailable until it is back.
        """
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        store = cls(settings, dim, index_settings, model_sha256)
        try:
            # At startup, wait for the collection to load (after a Milvus restart with data
            # that takes tens of seconds); later re-checks wait one call deadline at most.
            store._ensure_ready(load_timeout=max(settings.timeout_s, 120.0))
        except StoreUnavailable as exc:
            logger.warning("%s; serving 503 until it is reachable", exc)
        return store

    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        if self._client is None:
            self._client = MilvusClient(
                uri=self.settings.uri,
                token=self.settings.token.get_secret_value(),
                db_name=self.settings.database,
                timeout=self._timeout,
                # Our own channel: several stores in one process (tests, tools) stay apart.
                dedicated=True,
            )
        return self._client

    def _ensure_ready(self, load_timeout: float | None = None) -> Any:
        """The connected client with the collection created, checked and loaded.

        A load that outlasts `load_timeout` (default: the call deadline) raises
        StoreUnavailable; Milvus goes on loading, and a later call finds it loaded."""
        if self._closed:
            raise RuntimeError(f"milvus collection {self._collection}: store is closed")
        if self._ready:
            return self._client
        with self._setup_lock:
            if self._ready:
                return self._client
            try:
                client = self._connect()
                if not client.has_collection(self._collection, timeout=self._timeout):
                    self._create_collection(client)
                self._check_identity(client)
                client.load_collection(self._collection, timeout=load_timeout or self._timeout)
            except self._errors as exc:
                raise self._unavailable(exc) from exc
            self._ready = True
            logger.info(
                "milvus %s collection %s ready (%s, consistency %s, reads %s%s)",
                self.settings.uri,
                self._collection,
                self.settings.index_type,
                self._consistency,
                self._read_level,
                ", writes acknowledged once visible" if self._confirm_writes else "",
            )
            return client

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(*self._errors):
                self._client.close()
            self._client = None

    def _create_collection(self, client: Any) -> None:
        from pymilvus import DataType, MilvusClient

        identity = {_IDENTITY_KEY: 1, "model_sha256": self.model_sha256, "dim": self._dim}
        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description=json.dumps(identity)
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("has_metadata", DataType.BOOL)
        schema.add_field("thumbnail", DataType.VARCHAR, max_length=65535)
        schema.add_field("created_at", DataType.DOUBLE)
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name="vector",
            index_type=self.settings.index_type,
            metric_type="IP",
            params=self.build_params(),
        )
        client.create_collection(
            self._collection,
            schema=schema,
            index_params=index_params,
            consistency_level=self._consistency,
            timeout=self._timeout,
        )
        logger.info(
            "created milvus collection %s (%d-d, %s %s)",
            self._collection,
            self._dim,
            self.settings.index_type,
            self.build_params(),
        )

    def build_params(self) -> dict[str, Any]:
        s = self.settings
        kind = s.index_type
        if kind == "HNSW":
            return {"M": s.hnsw_m, "efConstruction": s.hnsw_ef_construction}
        if kind in ("IVF_FLAT", "IVF_SQ8"):
            return {"nlist": s.nlist}
        if kind == "IVF_PQ":
            return {"nlist": s.nlist, "m": s.pq_m or self._pq_m(), "nbits": 8}
        return {}

    def _pq_m(self) -> int:
        """dim / 8 sub-quantizers when 8 divides dim, else the largest divisor <= dim / 8."""
        d = self._dim
        if d % 8 == 0:
            return d // 8
        return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)

    def _check_identity(self, client: Any) -> None:
        info = client.describe_collection(self._collection, timeout=self._timeout)
        name = f"milvus collection {self._collection}"
        identity, stored_dim = _identity_of(info, self._collection)
        if stored_dim != self._dim:
            raise ArtifactMismatch(
                f"{name} holds {stored_dim}-d vectors but {self._dim}-d were requested (the "
                "model's embedding_dim); use another collection or re-index with the model "
                "that built it"
            )
        stored_sha = identity.get("model_sha256")
        if self.model_sha256 is not None and stored_sha not in (None, self.model_sha256):
            raise ArtifactMismatch(
                f"{name} was built with model sha256 {str(stored_sha)[:12]}... but the loaded "
                f"model is {self.model_sha256[:12]}...; descriptors of different models are "
                "not comparable. Use another collection or re-index with this model."
            )

    def close(self) -> None:
        self._closed = True
        self._drop_client()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        text = getattr(exc, "message", None) or str(exc)
        reason = f"milvus at {self.settings.uri} is unavailable: {text.splitlines()[0]}"
        self._availability = (time.monotonic(), reason)
        return StoreUnavailable(reason)

    def _call(self, fn: Callable[[Any], T]) -> T:
        """Run fn(client); Milvus/gRPC failures become StoreUnavailable (-> 503)."""
        client = self._ensure_ready()
        try:
            result = fn(client)
        except self._errors as exc:
            logger.warning("milvus call failed: %s", exc)
            # Re-check (and re-load) the collection on the next call: a restarted server
            # may come back with it released.
            self._ready = False
            raise self._unavailable(exc) from exc
        self._availability = (time.monotonic(), None)
        return result

    def availability(self) -> str | None:
        if self._closed:
            return f"milvus collection {self._collection}: store is closed"
        checked_at, reason = self._availability
        if time.monotonic() - checked_at < _AVAILABILITY_TTL_S:
            return reason
        # A real read, not a status call: after a restart Milvus reports the collection
        # loaded while reads still time out on segments being loaded.
        probe_timeout = min(self._timeout, 3.0)
        try:
            self._call(
                lambda c: c.query(
                    self._collection,
                    filter='id == ""',
                    output_fields=["id"],
                    limit=1,
                    timeout=probe_timeout,
                    # Reachability, not freshness: Strong would make every probe wait for a
                    # time tick (~200 ms here) on the request path of an idle service.
                    consistency_level="Eventually",
                )
            )
        except StoreUnavailable as exc:
            return str(exc)
        except ArtifactMismatch as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ writes
    @property
    def dim(self) -> int:
        return self._dim

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
        *,
        created_at: Sequence[float] | None = None,
    ) -> list[str]:
        """Upsert vectors [N, D] under `ids`; acknowledged by Milvus when this returns.

        `created_at` (one unix time per id; default now) is for copies of existing items.
        Batches above _UPSERT_BATCH rows go in several upserts: each is atomic, the whole
        call is not (a failure part-way leaves the earlier batches stored; retrying the
        call is safe because re-adding an id replaces it).
        """
        ids = check_ids(ids)
        if not ids:
            return []
        for item_id in ids:
            if len(item_id.encode("utf-8")) > MAX_ID_BYTES:
                raise InvalidVectors(f"id longer than {MAX_ID_BYTES} UTF-8 bytes: {item_id[:40]!r}")
        x = as_matrix(vectors, self._dim, "vectors")
        if x.shape[0] != len(ids):
            raise InvalidVectors(f"got {x.shape[0]} vectors for {len(ids)} ids")
        exact = to_float16(x).astype(np.float32)  # [N, D]: scores equal the FAISS store's
        metas = metadata_json(metadata, len(ids))  # validates; the dicts go to Milvus
        thumbs = check_thumbnails(thumbnails, len(ids)) or [None] * len(ids)
        for i, data in enumerate(thumbs):
            if data is not None and len(data) > MAX_THUMBNAIL_BYTES:
                raise InvalidVectors(
                    f"thumbnails[{i}] has {len(data)} bytes; the Milvus store keeps at most "
                    f"{MAX_THUMBNAIL_BYTES}"
                )
        now = time.time()
        times = [now] * len(ids) if created_at is None else [float(t) for t in created_at]
        if len(times) != len(ids):
            raise InvalidVectors(f"got {len(times)} created_at values for {len(ids)} ids")
        rows = [
            {
                "id": item_id,
                "vector": vec,
                "metadata": json.loads(meta) if meta is not None else {},
                "has_metadata": meta is not None,
                "thumbnail": "" if thumb is None else base64.b64encode(thumb).decode("ascii"),
                "created_at": t,
            }
            for item_id, vec, meta, thumb, t in zip(
                ids, exact.tolist(), metas, thumbs, times, strict=True
            )
        ]
        for start in range(0, len(rows), _UPSERT_BATCH):
            batch = rows[start : start + _UPSERT_BATCH]
            self._call(
                lambda c, b=batch: c.upsert(self._collection, b, timeout=self._timeout)  # type: ignore[misc]
            )
        self._wait_visible()
        return ids

    def delete(self, id: str) -> bool:
        """Delete `id`; True when it was live. Acknowledged by Milvus when this returns."""
        if not isinstance(id, str):
            raise InvalidVectors(f"id must be a string, got {id!r}")
        if not id or not self.contains([id]):
            return False
        expr = milvus_expr.ids_in([id])
        self._call(lambda c: c.delete(self._collection, filter=expr, timeout=self._timeout))
        self._wait_visible()
        return True

    def _wait_visible(self) -> None:
        """With strong_wait "write": return once every read sees the writes made so far.

        A Strong read gets a guarantee timestamp from Milvus when it arrives, i.e. after the
        writes returned, and is served only once the query nodes have consumed the log up to
        it; it matches no row, so it costs that wait and a round trip. Bounded reads after it
        are served at that consumed position or later."""
        if not self._confirm_writes:
            return
        self._query('id == ""', ["id"], limit=1, consistency="Strong")

    # ------------------------------------------------------------------ reads
    def _query(
        self,
        expr: str,
        fields: list[str],
        limit: int | None = None,
        consistency: str | None = None,
    ) -> list[dict]:
        kwargs: dict[str, Any] = {"consistency_level": consistency or self._read_level}
        if limit is not None:
            kwargs["limit"] = limit
        return list(
            self._call(
                lambda c: c.query(
                    self._collection,
                    filter=expr,
                    output_fields=fields,
                    timeout=self._timeout,
                    **kwargs,
                )
            )
        )

    def _rows_by_id(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        unique = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]
        for start in range(0, len(unique), _IDS_PER_QUERY):
            chunk = unique[start : start + _IDS_PER_QUERY]
            for row in self._query(milvus_expr.ids_in(chunk), fields):
                out[row["id"]] = row
        return out

    @staticmethod
    def _metadata(row: dict) -> dict[str, Any] | None:
        return row["metadata"] if row.get("has_metadata") else None

    def _item(self, row: dict, with_vector: bool) -> Item:
        vector = np.asarray(row["vector"], dtype=np.float32) if with_vector else None
        return Item(
            id=row["id"],
            metadata=self._metadata(row),
            vector=vector,
            created_at=float(row["created_at"]),
            has_thumbnail=bool(row.get("thumbnail")),
        )

    def get(self, id: str, with_vector: bool = False) -> Item | None:
        fields = _ITEM_FIELDS + (["vector"] if with_vector else [])
        row = self._rows_by_id([id], fields).get(id)
        return None if row is None else self._item(row, with_vector)

    def get_many(self, ids: Sequence[str], with_vectors: bool = False) -> list[Item]:
        fields = _ITEM_FIELDS + (["vector"] if with_vectors else [])
        rows = self._rows_by_id(ids, fields)
        return [self._item(rows[i], with_vectors) for i in dict.fromkeys(ids) if i in rows]

    def contains(self, ids: Sequence[str]) -> set[str]:
        return set(self._rows_by_id(list(ids), ["id"]))

    def thumbnail(self, id: str) -> bytes | None:
        row = self._rows_by_id([id], ["id", "thumbnail"]).get(id)
        if row is None or not row.get("thumbnail"):
            return None
        try:
            return base64.b64decode(row["thumbnail"], validate=True)
        except (binascii.Error, ValueError):  # written by us, so never expected
            logger.error("milvus item %r: thumbnail is not base64; ignoring it", id)
            return None

    def _count(self, expr: str, consistency: str | None = None) -> int:
        rows = self._query(expr, ["count(*)"], consistency=consistency)
        return int(rows[0]["count(*)"]) if rows else 0

    def __len__(self) -> int:
        return self._count('id > ""')

    def list_items(
        self, limit: int, cursor: str | None = None, id_prefix: str | None = None
    ) -> ItemPage:
        """Live items after `cursor` in ascending id order.

        Milvus has no ordered scan of VARCHAR keys, so a page scans the ids in the range with
        a query iterator and keeps the `limit + 1` smallest (O(range) per page; fine for
        browsing, not for exporting a billion ids).
        """
        check_limit(limit)
        if id_prefix is not None and not isinstance(id_prefix, str):
            raise InvalidVectors(f"id_prefix must be a string, got {id_prefix!r}")
        after = decode_cursor(cursor) if cursor is not None else None
        prefix = id_prefix or None
        expr = milvus_expr.id_range(after, prefix)
        smallest = self._smallest_ids(expr, limit + 1, prefix)
        total = self._count(milvus_expr.id_range(None, prefix))
        page_ids = smallest[:limit]
        rows = self._rows_by_id(page_ids, _ITEM_FIELDS)
        items = [self._item(rows[i], False) for i in page_ids if i in rows]
        more = len(smallest) > limit
        return ItemPage(items, encode_cursor(page_ids[-1]) if more else None, total)

    def _smallest_ids(self, expr: str, n: int, prefix: str | None) -> list[str]:
        def scan(client: Any) -> list[str]:
            iterator = client.query_iterator(
                self._collection,
                batch_size=min(max(n, 1000), _MAX_RESULT_WINDOW),
                filter=expr,
                output_fields=["id"],
                timeout=self._timeout,
                consistency_level=self._read_level,
            )
            best: list[str] = []
            try:
                while batch := iterator.next():
                    ids = [r["id"] for r in batch if milvus_expr.starts_with(r["id"], prefix)]
                    best = heapq.nsmallest(n, best + ids)
            finally:
                iterator.close()
            return best

        return self._call(scan)

    # ------------------------------------------------------------------ search
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
        """Top-k per query [Q, D], best first, scores = inner products with the stored
        vectors. IVF_PQ fetches max(k x candidate_factor, min_candidates) candidates and
        re-scores them exactly; HNSW searches with ef = max(store.milvus.ef, nprobe, k); IVF_*
        probe `nprobe` lists. `filter` is applied by Milvus inside the search."""
        q = as_matrix(queries, self._dim, "queries")
        idx = self.index_settings
        factor = idx.candidate_factor if candidate_factor is None else candidate_factor
        check_search_args(k, nprobe, factor)
        kind = self.settings.index_type
        rescore = kind in ("IVF_PQ", "IVF_SQ8")
        fetch = max(k * factor, idx.min_candidates) if rescore else k
        fetch = min(fetch, _MAX_RESULT_WINDOW)
        params: dict[str, Any] = {}
        if kind == "HNSW":
            params["ef"] = min(max(self.settings.ef, nprobe or 0, fetch), 32768)
        elif kind.startswith("IVF"):
            probes = nprobe if nprobe is not None else idx.nprobe
            params["nprobe"] = max(1, min(probes, idx.max_nprobe, self.settings.nlist))
        fields = ["metadata", "has_metadata"]
        if rescore or with_vectors:
            fields.append("vector")
        expr = milvus_expr.metadata_filter(filter) if filter is not None else ""
        results = self._call(
            lambda c: c.search(
                self._collection,
                data=q.tolist(),
                limit=fetch,
                filter=expr,
                output_fields=fields,
                search_params={"metric_type": "IP", "params": params},
                timeout=self._timeout,
                consistency_level=self._read_level,
            )
        )
        out: list[list[Hit]] = []
        for query, found in zip(q, results, strict=True):
            found = list(found)
            # [C, D] candidate vectors in one conversion, scored with one product (not one
            # array and one dot product per candidate).
            vectors = (
                np.asarray([r["entity"]["vector"] for r in found], dtype=np.float32).reshape(
                    len(found), self._dim
                )
                if "vector" in fields
                else None
            )
            if rescore and vectors is not None:
                scores = vectors @ query  # [C]
                # Best first (stable, as Milvus's order breaks ties), and Hits for the top k
                # only: the other candidates' metadata is never decoded.
                keep = np.argsort(-scores, kind="stable")[:k].tolist()
            else:
                scores = np.asarray([r["distance"] for r in found], dtype=np.float64)
                keep = list(range(min(k, len(found))))
            hits = [
                Hit(
                    found[i]["id"],
                    float(scores[i]),
                    self._metadata(found[i]["entity"]),
                    -1,  # Milvus has no row numbers
                    vectors[i] if with_vectors and vectors is not None else None,
                )
                for i in keep
            ]
            if score_threshold is not None:
                hits = [h for h in hits if h.score >= score_threshold]
            out.append(hits)
        return out

    # ------------------------------------------------------------------ status
    def _index_progress(self) -> dict[str, Any]:
        def describe(client: Any) -> dict[str, Any]:
            names = client.list_indexes(self._collection, timeout=self._timeout)
            if not names:
                return {}
            return dict(client.describe_index(self._collection, names[0], timeout=self._timeout))

        return self._call(describe)

    def stats(self) -> StoreStats:
        # Bounded: /health and the gauges need a recent count, not one that waits for a time
        # tick (a Strong read costs about 2 x 200 ms on Milvus's defaults).
        count = self._count('id > ""', consistency="Bounded")
        info = self._index_progress()
        params: dict[str, Any] = {
            "uri": self.settings.uri,
            "collection": self._collection,
            "consistency": self._consistency,
            "reads": self._read_level,
            "strong_wait": self.settings.strong_wait if self._consistency == "Strong" else None,
            "build_params": self.build_params(),
        }
        for key in ("indexed_rows", "total_rows", "pending_index_rows", "state"):
            if key in info:
                params[key] = info[key]
        return StoreStats(
            index_type=self.settings.index_type,
            ntotal=count,
            rows=count,
            tombstones=0,
            generation=0,
            dim=self._dim,
            training=int(info.get("pending_index_rows", 0) or 0) > 0,
            index_params=params,
            backend="milvus",
        )

    def _served_sealed_rows(self) -> int:
        """Rows of the sealed segments the query nodes have loaded (growing ones excluded)."""
        segments = self._call(
            lambda c: c.list_loaded_segments(self._collection, timeout=self._timeout)
        )
        return sum(int(s.num_rows) for s in segments)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Flush (seal growing segments), wait until every sealed row is indexed, then until
        the query nodes serve those rows from the indexed segments.

        The last wait matters: Milvus searches the rows of a segment by brute force in the
        query node's growing copy until it hands the indexed segment over (about 10 s after
        the build on a small server), so searches right after the build would not measure
        the index."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._call(lambda c: c.flush(self._collection, timeout=max(self._timeout, 60.0)))
        built_at: float | None = None
        while True:
            info = self._index_progress()
            if int(info.get("pending_index_rows", 0) or 0) == 0:
                indexed = int(info.get("indexed_rows", 0) or 0)
                served = self._served_sealed_rows()
                if served >= indexed:
                    return True
                built_at = built_at or time.monotonic()
                if time.monotonic() - built_at > _HANDOFF_WAIT_S:
                    # Built; searches are right either way, only slower until the handover.
                    logger.warning(
                        "milvus collection %s: %d rows indexed but the query nodes serve %d "
                        "from indexed segments after %.0f s; not waiting longer",
                        self._collection,
                        indexed,
                        served,
                        _HANDOFF_WAIT_S,
                    )
                    return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(1.0)
