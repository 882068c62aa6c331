"""POST /index (images) and POST /index/vectors (descriptors). 201 only once durable."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile, status

from app.api.deadline import deadline
from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import IndexResponse, VectorIndexRequest
from app.api.uploads import (
    check_item_id,
    check_metadata,
    parse_list_field,
    parse_metadata_entries,
    read_upload,
)
from app.errors import InvalidRequest
from app.search.service import content_id

router = APIRouter(tags=["index"])


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise InvalidRequest("ids must be unique within one request")


@router.post(
    "/index",
    response_model=IndexResponse,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 413, 415, 422, 503),
)
async def index_images(
    service: ServiceDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="One or more images")],
    ids: Annotated[
        list[str] | None,
        Form(
            description="One id per file (repeat the field, or one JSON array); "
            "default: the SHA-256 of the file"
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        Form(description="One JSON object per file (repeat the field, or one JSON array)"),
    ] = None,
) -> IndexResponse:
    limits = settings.limits
    if not files:
        raise InvalidRequest("send at least one image in the 'files' field")
    if len(files) > limits.max_files_per_request:
        raise InvalidRequest(
            f"{len(files)} files in one request; "
            f"at most {limits.max_files_per_request} are accepted"
        )
    given_ids = parse_list_field(ids, "ids", len(files))
    if given_ids is not None:
        given_ids = [check_item_id(i, limits) for i in given_ids]
        _check_unique(given_ids)
    metas = parse_metadata_entries(metadata, len(files), limits)
    t0 = time.perf_counter()
    # The deadline covers reading and embedding, never the durable write that follows.
    async with deadline(limits.request_timeout_s, "embedding the images"):
        blobs = [await read_upload(f, limits) for f in files]
        vectors = await service.embed_images(blobs)
    final_ids = given_ids if given_ids is not None else [content_id(b) for b in blobs]
    stored = await service.index_vectors(final_ids, vectors, metas)
    return IndexResponse(
        ids=stored, count=len(stored), timings_ms={"total": (time.perf_counter() - t0) * 1e3}
    )


@router.post(
    "/index/vectors",
    response_model=IndexResponse,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(413, 422, 503),
)
async def index_vectors(
    body: VectorIndexRequest, service: ServiceDep, settings: SettingsDep
) -> IndexResponse:
    limits = settings.limits
    if len(body.items) > limits.max_vectors_per_request:
        raise InvalidRequest(
            f"{len(body.items)} items in one request; at most "
            f"{limits.max_vectors_per_request} are accepted"
        )
    ids = [check_item_id(item.id, limits) for item in body.items]
    _check_unique(ids)
    vectors = np.stack(
        [
            service.check_vector(item.vector, f"items[{i}].vector")
            for i, item in enumerate(body.items)
        ]
    )
    metas = [
        check_metadata(item.metadata, limits, f"items[{i}].metadata")
        for i, item in enumerate(body.items)
    ]
    t0 = time.perf_counter()
    stored = await service.index_vectors(ids, vectors, metas)
    return IndexResponse(
        ids=stored, count=len(stored), timings_ms={"total": (time.perf_counter() - t0) * 1e3}
    )
