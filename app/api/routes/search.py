"""POST /search (an image), POST /search/vector (a descriptor) and POST /search/by-id (more
like a stored item)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from app.api.deadline import deadline
from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import (
    FILTER_DESCRIPTION,
    ByIdSearchRequest,
    HitOut,
    RerankName,
    SearchOptions,
    SearchResponse,
    VectorSearchRequest,
)
from app.api.uploads import check_item_id, parse_bbox, parse_filter_field, read_upload
from app.index.filters import parse_filter
from app.search.service import SearchOutcome

router = APIRouter(tags=["search"])


def _options(body: SearchOptions) -> dict[str, Any]:
    """The service's keyword options from a JSON search request (the filter validated here)."""
    return {
        "top_k": body.top_k,
        "rerank": body.rerank,
        "nprobe": body.nprobe,
        "score_threshold": body.score_threshold,
        "top_m": body.rerank_top_m,
        "filter": parse_filter(body.filter),
    }


def _response(outcome: SearchOutcome) -> SearchResponse:
    return SearchResponse(
        results=[
            HitOut(id=h.id, score=h.score, match=h.match, metadata=h.metadata)
            for h in outcome.hits
        ],
        rerank=outcome.rerank,
        rerank_skipped=outcome.rerank_skipped,
        timings_ms={k: round(v, 3) for k, v in outcome.timings_ms.items()},
    )


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search with an image",
    responses=error_responses(400, 413, 415, 422, 503),
)
async def search_image(
    service: ServiceDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="Query image (JPEG, PNG, WebP, GIF, BMP, TIFF)")],
    top_k: Annotated[int, Form(ge=1, description="Number of results (at most limits.max_top_k)")]
    = 10,
    rerank: Annotated[RerankName, Form(description="'none' or 'superglobal'")] = "none",
    rerank_top_m: Annotated[
        int | None,
        Form(ge=2, description="SuperGlobal's M (candidates re-ranked); only with superglobal"),
    ] = None,
    nprobe: Annotated[
        int | None, Form(ge=1, description="IVF lists probed (IVF-PQ only)")
    ] = None,
    score_threshold: Annotated[
        float | None, Form(ge=-1.0, le=1.0, description="Minimum cosine similarity")
    ] = None,
    bbox: Annotated[
        str | None,
        Form(
            description="Query region 'x1,y1,x2,y2' in pixels of the uploaded image (after its "
            "EXIF orientation is applied)",
            examples=["120,40,560,410"],
        ),
    ] = None,
    filter: Annotated[
        str | None,
        Form(
            description=f"A JSON object as text. {FILTER_DESCRIPTION}",
            examples=['{"album": "trip", "year": {"in": [2023, 2024]}}'],
        ),
    ] = None,
) -> SearchResponse:
    """Embed the uploaded image (or the `bbox` region of it) and return the `top_k` most
    similar stored items, best first.

    Send `multipart/form-data` with the image in the field `file`, e.g.
    `curl -F file=@query.jpg -F top_k=5 http://127.0.0.1:8000/search`.
    Scores are cosine similarities (SuperGlobal's scores with `rerank=superglobal`)."""
    box = parse_bbox(bbox)
    conditions = parse_filter_field(filter)
    service.check_options(top_k, rerank, nprobe, score_threshold, rerank_top_m)
    async with deadline(settings.limits.request_timeout_s, "the search"):
        data = await read_upload(file, settings.limits)
        outcome = await service.search_image(
            data,
            top_k=top_k,
            rerank=rerank,
            nprobe=nprobe,
            score_threshold=score_threshold,
            bbox=box,
            top_m=rerank_top_m,
            filter=conditions,
        )
    return _response(outcome)


@router.post(
    "/search/vector",
    response_model=SearchResponse,
    summary="Search with a descriptor",
    responses=error_responses(413, 422, 503),
)
async def search_vector(
    body: VectorSearchRequest, service: ServiceDep, settings: SettingsDep
) -> SearchResponse:
    """Search with a descriptor you computed yourself (embedding_dim numbers; normalised
    here). Same options as `/search`, as JSON."""
    query = service.check_vector(body.vector)
    options = _options(body)
    async with deadline(settings.limits.request_timeout_s, "the search"):
        outcome = await service.search_vector(query, **options)
    return _response(outcome)


@router.post(
    "/search/by-id",
    response_model=SearchResponse,
    summary="More like this stored item",
    responses=error_responses(404, 422, 503),
)
async def search_by_id(
    body: ByIdSearchRequest, service: ServiceDep, settings: SettingsDep
) -> SearchResponse:
    """Search with the stored descriptor of item `id`: "more like this" in one call. The item
    itself is left out of the results unless `include_self` is true. 404 for an unknown id."""
    item_id = check_item_id(body.id, settings.limits)
    options = _options(body)
    async with deadline(settings.limits.request_timeout_s, "the search"):
        outcome = await service.search_by_id(
            item_id, include_self=body.include_self, **options
        )
    return _response(outcome)
