"""GET /duplicates: groups of stored items that are copies of each other."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ServiceDep
from app.api.errors import error_responses
from app.api.schemas import DuplicateGroupOut, DuplicatesResponse

router = APIRouter(tags=["items"])

MAX_PAGE = 500


@router.get(
    "/duplicates",
    response_model=DuplicatesResponse,
    summary="Groups of stored copies",
    responses=error_responses(422, 503),
)
async def list_duplicates(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Groups per page")] = 20,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; omit for the first")
    ] = None,
) -> DuplicatesResponse:
    """Every group of stored items that are copies of each other: two items are joined when
    one's "more like this" search calls the other a `match`, and a group is everything joined
    directly or through other copies. Largest groups first, `limit` at a time.

    The first call scans the store (one search per item; later calls reuse the result and
    follow adds and deletes). A scan that takes longer than duplicates.wait_s answers 503 with
    Retry-After and how far it got; it goes on in the background."""
    page = await service.duplicates.page(limit, cursor)
    return DuplicatesResponse(
        groups=[
            DuplicateGroupOut(
                ids=g.ids,
                size=g.size,
                representative=g.representative,
                max_score=round(g.max_score, 6),
            )
            for g in page.groups
        ],
        next_cursor=page.next_cursor,
        total_groups=page.total_groups,
        total_items=page.total_items,
        items_checked=page.items_checked,
        scanned_at=page.scanned_at,
    )
