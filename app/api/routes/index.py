"""POST /index (images) and POST /index/vectors (descriptors). 201 only once durable."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile, status

from app.api.deadline import deadline
from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import error_responses
from app.api.schemas import DuplicateOf, IndexedFile, IndexResponse, VectorIndexRequest
from app.api.uploads import (
    NOTHING_STORED,
    check_item_id,
    check_metadata,
    file_labels,
    parse_list_field,
    parse_metadata_entries,
    read_upload,
    upload_filename,
    with_filename,
)
from app.errors import InvalidRequest, SimSearchError
from app.index.store import Hit
from app.search.service import content_id

router = APIRouter(tags=["index"])


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise InvalidRequest("ids must be unique within one request")


@router.post(
    "/index",
    response_model=IndexResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Index images",
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
    keep_filenames: Annotated[
        bool,
        Form(
            description="Store each upload's file name as metadata.filename (unless that "
            "file's metadata sets its own)"
        ),
    ] = True,
    check_duplicates: Annotated[
        bool,
        Form(
            description="Report, per file, the stored items it is a copy of (`duplicates`). "
            "false skips that search and its geometry check (about a fifth of the CPU an "
            "upload costs) for bulk loads that do not read it; `duplicates` is then null"
        ),
    ] = True,
) -> IndexResponse:
    """Embed and store one or more images; 201 once they are durable (a crash after the
    answer loses nothing). Send `multipart/form-data` with the images in the field `files`,
    e.g. `curl -F files=@a.jpg -F files=@b.jpg http://127.0.0.1:8000/index`.

    Without `ids`, an image's id is the SHA-256 of its bytes (re-uploading the same file
    replaces it). Re-adding an existing id replaces the item; `replaced` lists those ids.
    Each entry of `files` lists the stored items that upload is a copy of (`duplicates`: the
    `match` verdict of a "more like this" search of the new item, one search per upload).
    A JPEG thumbnail is kept with each item (GET /items/{id}/thumbnail) unless thumbnails are
    turned off (SIMSEARCH_THUMBNAILS__ENABLED=false)."""
    limits = settings.limits
    if not files:
        raise InvalidRequest("send at least one image in the 'files' field")
    if len(files) > limits.max_files_per_request:
        raise InvalidRequest(
            f"{len(files)} files in one request; "
            f"at most {limits.max_files_per_request} are accepted"
        )
    names = [upload_filename(f) for f in files]
    labels = file_labels(names)
    t0 = time.perf_counter()
    # Per-stage milliseconds summed over the files: decode, resize, thumbnail, inference.
    stages: dict[str, float] = {}
    try:
        given_ids = parse_list_field(ids, "ids", len(files))
        if given_ids is not None:
            given_ids = [check_item_id(i, limits) for i in given_ids]
            _check_unique(given_ids)
        metas = parse_metadata_entries(metadata, len(files), limits, labels)
        if keep_filenames:
            metas = [
                check_metadata(with_filename(m, n), limits, f"the metadata of {label}")
                for m, n, label in zip(metas, names, labels, strict=True)
            ]
        # The deadline covers reading, embedding and thumbnails, never the durable write after.
        async with deadline(limits.request_timeout_s, "embedding the images"):
            blobs = [
                await read_upload(f, limits, label) for f, label in zip(files, labels, strict=True)
            ]
            # One decode per file serves its descriptor and its thumbnail.
            vectors, thumbs = await service.embed_for_index(blobs, stages, labels)
    except SimSearchError as exc:
        raise type(exc)(f"{exc}; {NOTHING_STORED}") from exc
    final_ids = given_ids if given_ids is not None else [content_id(b) for b in blobs]
    del blobs  # the uploads are not needed for the durable write
    t_store = time.perf_counter()
    outcome = await service.index_vectors(final_ids, vectors, metas, thumbs)
    stages["store"] = (time.perf_counter() - t_store) * 1e3
    duplicates: list[list[Hit] | None] = [None] * len(outcome.ids)
    if check_duplicates:
        t_dup = time.perf_counter()
        duplicates = await service.duplicates.report(outcome.ids)
        stages["duplicates"] = (time.perf_counter() - t_dup) * 1e3
    return IndexResponse(
        ids=outcome.ids,
        count=len(outcome.ids),
        replaced=outcome.replaced,
        files=[
            IndexedFile(
                filename=f.filename,
                id=i,
                duplicates=None
                if dups is None
                else [DuplicateOf(id=h.id, score=h.score) for h in dups],
            )
            for f, i, dups in zip(files, outcome.ids, duplicates, strict=True)
        ],
        timings_ms={**stages, "total": (time.perf_counter() - t0) * 1e3},
    )


@router.post(
    "/index/vectors",
    response_model=IndexResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Index descriptors",
    responses=error_responses(413, 422, 503),
)
async def index_vectors(
    body: VectorIndexRequest, service: ServiceDep, settings: SettingsDep
) -> IndexResponse:
    """Store descriptors you computed yourself (bulk pipelines); 201 once durable. Items
    added this way have no thumbnail."""
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
    outcome = await service.index_vectors(ids, vectors, metas)
    return IndexResponse(
        ids=outcome.ids,
        count=len(outcome.ids),
        replaced=outcome.replaced,
        timings_ms={"total": (time.perf_counter() - t0) * 1e3},
    )
