"""Request and response bodies of the HTTP API (OpenAPI at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

RerankName = Literal["none", "superglobal"]


class HitOut(BaseModel):
    id: str
    score: float = Field(description="Cosine similarity, or SuperGlobal's score when re-ranked")
    metadata: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    results: list[HitOut]
    rerank: RerankName = Field(description="Which re-ranking ran")
    rerank_skipped: str | None = Field(
        default=None, description="Why a requested SuperGlobal re-ranking did not run (e.g. "
        "the store is smaller than its top-M); null when it ran or was not requested")
    timings_ms: dict[str, float]


class VectorSearchRequest(BaseModel):
    vector: list[float] = Field(
        min_length=1, description="Query descriptor (embedding_dim finite numbers, not all 0); "
        "normalised to unit length here"
    )
    top_k: int = Field(default=10, ge=1, description="Number of results (at most max_top_k)")
    rerank: RerankName = "none"
    rerank_top_m: int | None = Field(default=None, ge=2)
    nprobe: int | None = Field(default=None, ge=1)
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)


class IndexResponse(BaseModel):
    ids: list[str]
    count: int
    timings_ms: dict[str, float] = Field(default_factory=dict)


class VectorItem(BaseModel):
    id: str = Field(min_length=1, description="Opaque id (never a file name)")
    vector: list[float] = Field(min_length=1)
    metadata: dict[str, Any] | None = None


class VectorIndexRequest(BaseModel):
    items: list[VectorItem] = Field(min_length=1)


class ItemOut(BaseModel):
    id: str
    metadata: dict[str, Any] | None = None
    created_at: float
    vector: list[float] | None = None


class DeleteResponse(BaseModel):
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


class HealthResponse(BaseModel):
    status: Literal["ok", "starting", "degraded"]
    ready: bool
    detail: str | None = None
    model: ModelHealth | None = None
    index: IndexHealth | None = None


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. ['body', 'top_k']")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What was wrong and what is accepted")
    errors: list[FieldError] | None = Field(
        default=None, description="Request validation failures, one per field"
    )


class LiveResponse(BaseModel):
    status: Literal["alive"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
