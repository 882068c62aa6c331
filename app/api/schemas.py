"""Request and response bodies of the HTTP API (OpenAPI at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.index.filters import KEY_PATTERN

RerankName = Literal["none", "superglobal"]

FILTER_DESCRIPTION = (
    "Metadata conditions that every result must meet, applied inside the index (so up to "
    'top_k matching results come back): {"key": value} for equality, {"key": {"in": [v1, '
    "v2]}} for any of several values; strings, numbers and booleans; all keys must hold"
)
METADATA_DESCRIPTION = (
    "A JSON object stored with the item; its keys are what filters match on, so they must "
    "match " + KEY_PATTERN.pattern + " (letters, digits, '_' and '-')"
)
# Checked with a clear message in app/api/uploads.py; here so the schema says it too.
METADATA_KEYS_SCHEMA: dict[str, Any] = {"propertyNames": {"pattern": KEY_PATTERN.pattern}}
FILTER_EXAMPLE = {"album": "trip", "year": {"in": [2023, 2024]}}
_HIT_EXAMPLE = {"id": "photos/eiffel.jpg", "score": 0.913, "match": True,
                "metadata": {"filename": "eiffel.jpg"}}


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class RequestBody(BaseModel):
    """A JSON request body: an unknown (e.g. misspelt) key is a 422 naming it and the
    accepted ones (app/api/errors.py), never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class HitOut(BaseModel):
    model_config = _examples(_HIT_EXAMPLE)

    id: str
    score: float = Field(
        description="Cosine similarity with the query, in [-1, 1], re-ranked or not "
        "(score_threshold filters on it)"
    )
    match: bool = Field(
        description="The copy verdict: this item is a copy or near-duplicate of the query "
        "(same picture after crops, resizes, re-encoding, colour, rotation, mirroring, borders), "
        "not merely similar. GET /health says how it is decided and its measured error rates"
    )
    rerank_score: float | None = Field(
        default=None,
        description="SuperGlobal's score, which ordered the results, when rerank='superglobal' "
        "ran; null otherwise. It never changes `score` or `match`",
    )
    metadata: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    model_config = _examples(
        {
            "results": [_HIT_EXAMPLE],
            "rerank": "none",
            "timings_ms": {"embed": 41.2, "ann_rescore": 0.4, "total": 42.0},
        }
    )

    results: list[HitOut]
    rerank: RerankName = Field(description="Which re-ranking ran")
    rerank_skipped: str | None = Field(
        default=None, description="Why a requested SuperGlobal re-ranking did not run (e.g. "
        "the store is smaller than its top-M); null when it ran or was not requested")
    timings_ms: dict[str, float]


class SearchOptions(RequestBody):
    """The options every JSON search request shares."""

    top_k: int = Field(default=10, ge=1, description="Number of results (at most max_top_k)")
    rerank: RerankName = Field(default="none", description="'none' or 'superglobal'")
    rerank_top_m: int | None = Field(
        default=None, ge=2, description="SuperGlobal's M (only with rerank='superglobal')"
    )
    nprobe: int | None = Field(default=None, ge=1, description="IVF lists probed (IVF-PQ only)")
    score_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0,
        description="Minimum cosine similarity (the `score` of every result)",
    )
    filter: dict[str, Any] | None = Field(default=None, description=FILTER_DESCRIPTION)


class ByIdSearchRequest(SearchOptions):
    model_config = _examples(
        {"id": "photos/eiffel.jpg", "top_k": 8},
        {"id": "photos/eiffel.jpg", "top_k": 8, "filter": FILTER_EXAMPLE, "include_self": True},
    )

    id: str = Field(min_length=1, description="A stored item; its vector is the query")
    include_self: bool = Field(
        default=False, description="Keep the item itself in the results (it scores ~1.0)"
    )


class VectorSearchRequest(SearchOptions):
    model_config = _examples({"vector": [0.021, -0.113, 0.087], "top_k": 5, "filter": None})

    vector: list[float] = Field(
        min_length=1, description="Query descriptor (embedding_dim finite numbers, not all 0); "
        "normalised to unit length here"
    )


class DuplicateOf(BaseModel):
    id: str = Field(description="A stored item the upload is a copy of")
    score: float = Field(description="Cosine similarity between the two")


class IndexedFile(BaseModel):
    filename: str | None = Field(description="The upload's file name as the client sent it")
    id: str = Field(description="The id it is stored under")
    duplicates: list[DuplicateOf] | None = Field(
        default_factory=list,
        description="Stored items this upload is a copy of (the `match` verdict of search), "
        "best first; other uploads of the same request included. null: not checked "
        "(check_duplicates=false, or the store failed after the durable add)",
    )


class IndexResponse(BaseModel):
    model_config = _examples(
        {
            "ids": ["photos/eiffel.jpg"],
            "count": 1,
            "replaced": [],
            "files": [
                {
                    "filename": "eiffel.jpg",
                    "id": "photos/eiffel.jpg",
                    "duplicates": [{"id": "archive/eiffel-2019.jpg", "score": 0.942}],
                }
            ],
            "timings_ms": {"total": 57.1},
        }
    )

    ids: list[str] = Field(description="Stored ids, in the order of the request")
    count: int
    replaced: list[str] = Field(
        default_factory=list,
        description="Ids that already existed and were replaced (item, metadata, thumbnail)",
    )
    files: list[IndexedFile] | None = Field(
        default=None, description="Image uploads only: each file and the id it got"
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)


class VectorItem(RequestBody):
    id: str = Field(min_length=1, description="Opaque id (never a file name)")
    vector: list[float] = Field(min_length=1)
    metadata: dict[str, Any] | None = Field(
        default=None, description=METADATA_DESCRIPTION, json_schema_extra=METADATA_KEYS_SCHEMA
    )


class VectorIndexRequest(RequestBody):
    model_config = _examples(
        {"items": [{"id": "sku-1001", "vector": [0.021, -0.113, 0.087], "metadata": None}]}
    )

    items: list[VectorItem] = Field(min_length=1)


class ItemOut(BaseModel):
    model_config = _examples(
        {
            "id": "photos/eiffel.jpg",
            "metadata": {"filename": "eiffel.jpg"},
            "created_at": 1796000000.0,
            "has_thumbnail": True,
            "vector": None,
        }
    )

    id: str
    metadata: dict[str, Any] | None = None
    created_at: float = Field(description="Unix time of the add that stored this version")
    has_thumbnail: bool = Field(
        default=False, description="GET /items/{id}/thumbnail has a JPEG (image uploads only)"
    )
    vector: list[float] | None = Field(
        default=None, description="The stored descriptor, with include_vector=true"
    )


class ItemSummary(BaseModel):
    id: str
    metadata: dict[str, Any] | None = None
    created_at: float
    has_thumbnail: bool


class ItemPageOut(BaseModel):
    model_config = _examples(
        {
            "items": [
                {
                    "id": "photos/eiffel.jpg",
                    "metadata": {"filename": "eiffel.jpg"},
                    "created_at": 1796000000.0,
                    "has_thumbnail": True,
                }
            ],
            "next_cursor": "cGhvdG9zL2VpZmZlbC5qcGc",
            "total": 30,
        }
    )

    items: list[ItemSummary] = Field(description="In ascending id order")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
    total: int = Field(description="All live items matching id_prefix, not just this page")


class DuplicateGroupOut(BaseModel):
    ids: list[str] = Field(description="The copies, oldest first (the likely original)")
    size: int
    representative: str = Field(description="The item to keep by default: ids[0]")
    max_score: float = Field(description="Highest cosine similarity between two of the copies")


class DuplicatesResponse(BaseModel):
    model_config = _examples(
        {
            "groups": [
                {
                    "ids": ["photos/eiffel.jpg", "uploads/eiffel-small.jpg"],
                    "size": 2,
                    "representative": "photos/eiffel.jpg",
                    "max_score": 0.942,
                }
            ],
            "next_cursor": None,
            "total_groups": 1,
            "total_items": 2,
            "items_checked": 30,
            "scanned_at": 1796000000.0,
        }
    )

    groups: list[DuplicateGroupOut] = Field(
        description="Largest first, then by smallest id; only groups of two or more"
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
    total_groups: int = Field(description="All groups, not just this page")
    total_items: int = Field(description="Items in all groups")
    items_checked: int = Field(description="Stored items the grouping covers")
    scanned_at: float = Field(
        description="Unix time of the last full scan; adds and deletes since are included"
    )


class DeleteResponse(BaseModel):
    model_config = _examples({"id": "photos/eiffel.jpg", "deleted": True})

    id: str
    deleted: bool


class ModelHealth(BaseModel):
    name: str
    version: str
    architecture: str = Field(description="Model family, e.g. dolg, pooled, cfcd")
    backbone: str = Field(description="e.g. resnet50, efficientnet_lite0 ('' if not recorded)")
    source: str
    description: str
    intended_use: str
    embedding_dim: int
    precision: str
    providers: list[str] = Field(description="session.get_providers() of the live session")
    device: str


class IndexHealth(BaseModel):
    type: str
    ntotal: int
    generation: int
    tombstones: int
    training: bool
    params: dict[str, Any]


class VerdictHealth(BaseModel):
    """How `match` is decided, and how often it erred in the study that fitted it."""

    method: str = Field(description="The rule in words")
    rule: dict[str, Any] = Field(
        description="cosine_alone, cosine_floor, min_inliers, verify_top, working_side"
    )
    measured: dict[str, Any] | None = Field(
        description="Error rates measured on held-out photos (copies found, never-stored "
        "queries called a match; plain and re-ranked; vector search), the command that measured "
        "them and the cost per search; null if the rule was never measured"
    )


class HealthResponse(BaseModel):
    model_config = _examples(
        {
            "status": "ok",
            "ready": True,
            "detail": None,
            "model": {
                "name": "dolg-r50-random-bncal",
                "version": "1",
                "source": "random-init",
                "description": "DOLG-R50, random initialisation, BatchNorm calibrated",
                "intended_use": "near-duplicate search",
                "embedding_dim": 512,
                "precision": "fp32",
                "providers": ["CPUExecutionProvider"],
                "device": "cpu",
            },
            "index": {
                "type": "flat",
                "ntotal": 30,
                "generation": 1,
                "tombstones": 0,
                "training": False,
                "params": {},
            },
        }
    )

    status: Literal["ok", "starting", "degraded"]
    ready: bool
    detail: str | None = None
    model: ModelHealth | None = None
    index: IndexHealth | None = None
    verdict: VerdictHealth | None = None


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. ['body', 'top_k']")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    model_config = _examples(
        {"detail": "top_k must be between 1 and 1000; got 5000"},
        {
            "detail": "field 'top_k': Input should be a valid integer",
            "errors": [{"loc": ["body", "top_k"], "msg": "Input should be a valid integer",
                        "type": "int_parsing"}],
        },
    )

    detail: str = Field(description="What was wrong and what is accepted")
    errors: list[FieldError] | None = Field(
        default=None, description="Request validation failures, one per field"
    )


class LiveResponse(BaseModel):
    model_config = _examples({"status": "alive"})

    status: Literal["alive"]


class ReadyResponse(BaseModel):
    model_config = _examples({"status": "ready"})

    status: Literal["ready"]
