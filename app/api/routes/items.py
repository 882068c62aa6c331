"""GET and DELETE /items/{id}."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ReadyRuntimeDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import DeleteResponse, ItemOut
from app.api.uploads import check_item_id
from app.errors import NotFound

router = APIRouter(tags=["items"])


@router.get(
    "/items/{item_id:path}", response_model=ItemOut, responses=error_responses(404, 422, 503)
)
async def get_item(
    item_id: str, runtime: ReadyRuntimeDep, settings: SettingsDep, include_vector: bool = False
) -> ItemOut:
    check_item_id(item_id, settings.limits)
    item = await runtime.service.get_item(item_id, include_vector)
    if item is None:
        raise NotFound(f"no item with id {item_id!r}")
    vector = (
        item.vector.astype(float).tolist() if include_vector and item.vector is not None else None
    )
    return ItemOut(id=item.id, metadata=item.metadata, created_at=item.created_at, vector=vector)


@router.delete(
    "/items/{item_id:path}",
    response_model=DeleteResponse,
    responses=error_responses(404, 422, 503),
)
async def delete_item(
    item_id: str, runtime: ReadyRuntimeDep, settings: SettingsDep
) -> DeleteResponse:
    check_item_id(item_id, settings.limits)
    deleted = await runtime.service.delete_item(item_id)
    if not deleted:
        raise NotFound(f"no item with id {item_id!r}")
    return DeleteResponse(id=item_id, deleted=True)
