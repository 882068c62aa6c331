"""GET /items (browse), GET /items/{id}/thumbnail, GET and DELETE /items/{id}.

The thumbnail route is declared before the item routes: their `{item_id:path}` would
otherwise swallow the `/thumbnail` suffix."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import DeleteResponse, ItemOut, ItemPageOut, ItemSummary
from app.api.uploads import check_item_id
from app.errors import NotFound
from app.thumbnails import JPEG_MEDIA_TYPE

router = APIRouter(tags=["items"])

MAX_PAGE = 1000
# Thumbnails change only when their id is re-added: revalidate with the ETag every time
# (cheap: 304 without a body), keep only in the client's own cache (API keys may guard them).
THUMBNAIL_CACHE_CONTROL = "private, no-cache"


@router.get(
    "/items",
    response_model=ItemPageOut,
    summary="Browse stored items",
    responses=error_responses(422, 503),
)
async def list_items(
    service: ServiceDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")] = 50,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; omit for the first")
    ] = None,
    id_prefix: Annotated[
        str | None, Query(description="Only ids that start with this text", examples=["photos/"])
    ] = None,
) -> ItemPageOut:
    """Items in ascending id order, `limit` at a time, with the total. Paging is stable while
    items are added and deleted: the cursor remembers the last id, so no item is returned
    twice, and every item that exists throughout the paging is returned once."""
    if id_prefix is not None and id_prefix:
        check_item_id(id_prefix, settings.limits)
    page = await service.list_items(limit, cursor, id_prefix or None)
    return ItemPageOut(
        items=[
            ItemSummary(
                id=i.id,
                metadata=i.metadata,
                created_at=i.created_at,
                has_thumbnail=i.has_thumbnail,
            )
            for i in page.items
        ],
        next_cursor=page.next_cursor,
        total=page.total,
    )


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "/items/{item_id:path}/thumbnail",
    response_class=Response,
    summary="An item's thumbnail",
    responses={
        200: {
            "content": {JPEG_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "description": "JPEG, long side at most thumbnails.long_side pixels; with an ETag",
        },
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        **error_responses(404, 422, 503),
    },
)
async def get_thumbnail(
    item_id: str,
    service: ServiceDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The JPEG kept when the image was indexed. 404 when the id is unknown, or when the item
    has no thumbnail (added as a vector, or indexed with thumbnails turned off)."""
    check_item_id(item_id, settings.limits)
    data = await service.thumbnail(item_id)
    if data is None:
        if not await service.exists(item_id):
            raise NotFound(f"no item with id {item_id!r}")
        raise NotFound(
            f"item {item_id!r} has no thumbnail: it was added as a vector, or indexed while "
            "thumbnails were turned off"
        )
    etag = _etag(data)
    headers = {"ETag": etag, "Cache-Control": THUMBNAIL_CACHE_CONTROL}
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type=JPEG_MEDIA_TYPE, headers=headers)


@router.get(
    "/items/{item_id:path}",
    response_model=ItemOut,
    summary="Read one item",
    responses=error_responses(404, 422, 503),
)
async def get_item(
    item_id: str, service: ServiceDep, settings: SettingsDep, include_vector: bool = False
) -> ItemOut:
    """An item's metadata, creation time and whether it has a thumbnail; its stored
    descriptor too with `include_vector=true`."""
    check_item_id(item_id, settings.limits)
    item = await service.get_item(item_id, include_vector)
    if item is None:
        raise NotFound(f"no item with id {item_id!r}")
    vector = (
        item.vector.astype(float).tolist() if include_vector and item.vector is not None else None
    )
    return ItemOut(
        id=item.id,
        metadata=item.metadata,
        created_at=item.created_at,
        has_thumbnail=item.has_thumbnail,
        vector=vector,
    )


@router.delete(
    "/items/{item_id:path}",
    response_model=DeleteResponse,
    summary="Delete one item",
    responses=error_responses(404, 422, 503),
)
async def delete_item(
    item_id: str, service: ServiceDep, settings: SettingsDep
) -> DeleteResponse:
    """Delete the item and its thumbnail; durable when answered. 404 for an unknown id."""
    check_item_id(item_id, settings.limits)
    deleted = await service.delete_item(item_id)
    if not deleted:
        raise NotFound(f"no item with id {item_id!r}")
    return DeleteResponse(id=item_id, deleted=True)

