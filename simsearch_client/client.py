"""`SimSearchClient`: one method per route of the service, typed results, errors as `ApiError`.

Only httpx and the standard library are imported, so the client installs and runs anywhere
(`pip install httpx`), without the server's onnxruntime, FAISS or numpy.

    with SimSearchClient("http://127.0.0.1:8000", api_key=None) as client:
        client.index_images(["a.jpg", "b.jpg"])
        for hit in client.search("query.jpg", top_k=5).results:
            print(hit.id, hit.score)
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

Rerank = Literal["none", "superglobal"]
# An image: a path, raw bytes, or (file name, bytes).
ImageInput = str | Path | bytes | tuple[str, bytes]

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The service answered with an error status; `detail` is its explanation."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, Any] | None
    # The server's verdict: a copy / near-duplicate of the query (False: merely similar).
    match: bool = False


@dataclass(frozen=True, slots=True)
class SearchResult:
    results: list[Hit]
    rerank: str
    timings_ms: dict[str, float]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A stored item an upload is a copy of."""

    id: str
    score: float


@dataclass(frozen=True, slots=True)
class IndexResult:
    ids: list[str]
    count: int
    replaced: list[str]
    # (upload file name, id) per image upload; empty for vectors.
    files: list[tuple[str | None, str]] = field(default_factory=list)
    # Image uploads: stored id -> the stored items that upload is a copy of, best first (an id
    # is missing when the server did not check it: check_duplicates=False, or a store failure).
    duplicates: dict[str, list[Duplicate]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Stored items that are copies of each other, oldest first (ids[0] = representative)."""

    ids: list[str]
    size: int
    representative: str
    max_score: float


@dataclass(frozen=True, slots=True)
class DuplicatePage:
    groups: list[DuplicateGroup]
    next_cursor: str | None
    total_groups: int
    total_items: int
    items_checked: int


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    metadata: dict[str, Any] | None
    created_at: float
    has_thumbnail: bool
    vector: list[float] | None = None


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[Item]
    next_cursor: str | None
    total: int


def _item(body: Mapping[str, Any]) -> Item:
    return Item(
        id=body["id"],
        metadata=body.get("metadata"),
        created_at=float(body.get("created_at", 0.0)),
        has_thumbnail=bool(body.get("has_thumbnail", False)),
        vector=body.get("vector"),
    )


def _search_result(body: Mapping[str, Any]) -> SearchResult:
    return SearchResult(
        results=[
            Hit(h["id"], float(h["score"]), h.get("metadata"), bool(h.get("match", False)))
            for h in body["results"]
        ],
        rerank=body.get("rerank", "none"),
        timings_ms=dict(body.get("timings_ms", {})),
    )


def _index_result(body: Mapping[str, Any]) -> IndexResult:
    return IndexResult(
        ids=list(body["ids"]),
        count=int(body["count"]),
        replaced=list(body.get("replaced", [])),
        files=[(f.get("filename"), f["id"]) for f in body.get("files") or []],
        duplicates={
            f["id"]: [Duplicate(d["id"], float(d["score"])) for d in f.get("duplicates") or []]
            for f in body.get("files") or []
            if "duplicates" not in f or f["duplicates"] is not None
        },
    )


def _duplicate_page(body: Mapping[str, Any]) -> DuplicatePage:
    return DuplicatePage(
        groups=[
            DuplicateGroup(
                ids=list(g["ids"]),
                size=int(g["size"]),
                representative=g["representative"],
                max_score=float(g["max_score"]),
            )
            for g in body["groups"]
        ],
        next_cursor=body.get("next_cursor"),
        total_groups=int(body["total_groups"]),
        total_items=int(body["total_items"]),
        items_checked=int(body["items_checked"]),
    )


def _image_part(image: ImageInput, field_name: str) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(image, bytes):
        name, data = "image", image
    elif isinstance(image, tuple):
        name, data = image
    else:
        path = Path(image)
        name, data = path.name, path.read_bytes()
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if not ctype.startswith("image/"):
        ctype = "application/octet-stream"
    return field_name, (name, data, ctype)


def _options(
    top_k: int,
    rerank: Rerank,
    rerank_top_m: int | None,
    nprobe: int | None,
    score_threshold: float | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"top_k": top_k, "rerank": rerank}
    for name, value in (
        ("rerank_top_m", rerank_top_m),
        ("nprobe", nprobe),
        ("score_threshold", score_threshold),
    ):
        if value is not None:
            out[name] = value
    return out


def _item_path(item_id: str) -> str:
    # Ids may hold any printable text ('/', '?', '#' included): escape all of it.
    return "/items/" + quote(item_id, safe="")


class SimSearchClient:
    """A synchronous client; thread-safe (one pooled httpx.Client). Close it, or use `with`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> SimSearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = self._http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                detail = str(resp.json().get("detail", resp.text))
            except (ValueError, AttributeError):
                detail = resp.text[:500] or resp.reason_phrase
            retry = resp.headers.get("Retry-After")
            raise ApiError(
                resp.status_code, detail, float(retry) if retry and retry.isdigit() else None
            )
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """GET /health: model, providers, index type and size, readiness."""
        body: dict[str, Any] = self._json("GET", "/health")
        return body

    def ready(self) -> bool:
        """GET /health/ready: True once the model is loaded and warmed up."""
        try:
            return self._http.get("/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------ search
    def search(
        self,
        image: ImageInput,
        *,
        top_k: int = 10,
        rerank: Rerank = "none",
        rerank_top_m: int | None = None,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        bbox: Sequence[float] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """POST /search with an image; `bbox` (x1, y1, x2, y2) searches that region only."""
        form = {
            k: str(v)
            for k, v in _options(top_k, rerank, rerank_top_m, nprobe, score_threshold).items()
        }
        if bbox is not None:
            form["bbox"] = ",".join(str(v) for v in bbox)
        if filter:
            form["filter"] = json.dumps(dict(filter))
        files = [_image_part(image, "file")]
        return _search_result(self._json("POST", "/search", files=files, data=form))

    def search_vector(
        self,
        vector: Sequence[float],
        *,
        top_k: int = 10,
        rerank: Rerank = "none",
        rerank_top_m: int | None = None,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """POST /search/vector with a descriptor (normalised by the server)."""
        body = _options(top_k, rerank, rerank_top_m, nprobe, score_threshold)
        body["vector"] = [float(v) for v in vector]
        if filter:
            body["filter"] = dict(filter)
        return _search_result(self._json("POST", "/search/vector", json=body))

    def search_by_id(
        self,
        item_id: str,
        *,
        top_k: int = 10,
        rerank: Rerank = "none",
        rerank_top_m: int | None = None,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        filter: Mapping[str, Any] | None = None,
        include_self: bool = False,
    ) -> SearchResult:
        """POST /search/by-id: more like a stored item (left out unless include_self)."""
        body = _options(top_k, rerank, rerank_top_m, nprobe, score_threshold)
        body.update(id=item_id, include_self=include_self)
        if filter:
            body["filter"] = dict(filter)
        return _search_result(self._json("POST", "/search/by-id", json=body))

    # ------------------------------------------------------------------ index
    def index_images(
        self,
        images: Sequence[ImageInput],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        keep_filenames: bool = True,
        check_duplicates: bool = True,
    ) -> IndexResult:
        """POST /index: one request with every image (the server caps files per request).
        `check_duplicates=False` skips the per-file duplicate report (cheaper bulk loads)."""
        files = [_image_part(img, "files") for img in images]
        form: dict[str, str] = {"keep_filenames": "true" if keep_filenames else "false"}
        if not check_duplicates:
            form["check_duplicates"] = "false"
        if ids is not None:
            form["ids"] = json.dumps(list(ids))
        if metadata is not None:
            form["metadata"] = json.dumps([None if m is None else dict(m) for m in metadata])
        return _index_result(self._json("POST", "/index", files=files, data=form))

    def index_vectors(
        self,
        items: Sequence[tuple[str, Sequence[float], Mapping[str, Any] | None]],
    ) -> IndexResult:
        """POST /index/vectors with (id, vector, metadata) triples."""
        body = {
            "items": [
                {
                    "id": item_id,
                    "vector": [float(v) for v in vector],
                    "metadata": None if meta is None else dict(meta),
                }
                for item_id, vector, meta in items
            ]
        }
        return _index_result(self._json("POST", "/index/vectors", json=body))

    # ------------------------------------------------------------------ items
    def get_item(self, item_id: str, include_vector: bool = False) -> Item:
        """GET /items/{id}; ApiError 404 for an unknown id."""
        params = {"include_vector": "true"} if include_vector else None
        return _item(self._json("GET", _item_path(item_id), params=params))

    def thumbnail(self, item_id: str) -> bytes:
        """GET /items/{id}/thumbnail: JPEG bytes; ApiError 404 when there is none."""
        return self._request("GET", _item_path(item_id) + "/thumbnail").content

    def list_items(
        self, limit: int = 50, cursor: str | None = None, id_prefix: str | None = None
    ) -> ItemPage:
        """GET /items: one page in ascending id order, with the total."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if id_prefix:
            params["id_prefix"] = id_prefix
        body = self._json("GET", "/items", params=params)
        return ItemPage(
            items=[_item(i) for i in body["items"]],
            next_cursor=body.get("next_cursor"),
            total=int(body["total"]),
        )

    def iter_items(self, id_prefix: str | None = None, page_size: int = 500) -> Iterator[Item]:
        """Every item (matching id_prefix), page by page."""
        cursor: str | None = None
        while True:
            page = self.list_items(page_size, cursor, id_prefix)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # ------------------------------------------------------------------ duplicates
    def duplicates(
        self, limit: int = 20, cursor: str | None = None, wait: float = 0.0
    ) -> DuplicatePage:
        """GET /duplicates: one page of groups of stored copies, largest first. The first
        call after a change may find the server still scanning (503): with `wait` > 0 it
        retries (after Retry-After) for up to that many seconds."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        deadline = time.monotonic() + wait
        while True:
            try:
                return _duplicate_page(self._json("GET", "/duplicates", params=params))
            except ApiError as exc:
                pause = exc.retry_after or 1.0
                if exc.status != 503 or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)

    def iter_duplicates(self, page_size: int = 100, wait: float = 0.0) -> Iterator[DuplicateGroup]:
        """Every group, largest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.duplicates(page_size, cursor, wait=wait)
            yield from page.groups
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete_item(self, item_id: str) -> bool:
        """DELETE /items/{id}: True when deleted, False when there was no such item."""
        try:
            self._request("DELETE", _item_path(item_id))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True
