"""POST /search (an image) and POST /search/vector (a descriptor)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api.deadline import deadline
from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import HitOut, RerankName, SearchResponse, VectorSearchRequest
from app.api.uploads import parse_bbox, read_upload
from app.search.service import SearchOutcome

router = APIRouter(tags=["search"])


def _response(outcome: SearchOutcome) -> SearchResponse:
    return SearchResponse(
        results=[HitOut(id=h.id, score=h.score, metadata=h.metadata) for h in outcome.hits],
        rerank=outcome.rerank,
        rerank_skipped=outcome.rerank_skipped,
        timings_ms={k: round(v, 3) for k, v in outcome.timings_ms.items()},
    )


@router.post(
    "/search",
    response_model=SearchResponse,
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
        int | None, Form(ge=2, description="SuperGlobal's M (candidates re-ranked)")
    ] = None,
    nprobe: Annotated[
        int | None, Form(ge=1, description="IVF lists probed (IVF-PQ only)")
    ] = None,
    score_threshold: Annotated[
        float | None, Form(ge=-1.0, le=1.0, description="Minimum cosine similarity")
    ] = None,
    bbox: Annotated[
        str | None,
        Form(description="Query region 'x1,y1,x2,y2' in pixels of the uploaded image"),
    ] = None,
) -> SearchResponse:
    box = parse_bbox(bbox)
    service.check_search_params(top_k, nprobe, score_threshold, rerank_top_m)
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
        )
    return _response(outcome)


@router.post(
    "/search/vector",
    response_model=SearchResponse,
    responses=error_responses(413, 422, 503),
)
async def search_vector(
    body: VectorSearchRequest, service: ServiceDep, settings: SettingsDep
) -> SearchResponse:
    query = service.check_vector(body.vector)
    async with deadline(settings.limits.request_timeout_s, "the search"):
        outcome = await service.search_vector(
            query,
            top_k=body.top_k,
            rerank=body.rerank,
            nprobe=body.nprobe,
            score_threshold=body.score_threshold,
            top_m=body.rerank_top_m,
        )
    return _response(outcome)
