"""GET /health (the truth about what runs), /health/live and /health/ready for orchestrators.

`status_router` (/health) needs a read key when keys are configured; `router` (live, ready)
is always open: probes carry no credentials and learn nothing but alive/ready."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import OptionalRuntimeDep
from app.api.errors import error_responses
from app.api.schemas import (
    HealthResponse,
    IndexHealth,
    LiveResponse,
    ModelHealth,
    ReadyResponse,
    VerdictHealth,
)
from app.errors import NotReady, StoreUnavailable
from app.index.store import StoreStats
from app.runtime import Runtime
from app.search.verdict import describe, load_rule_file

router = APIRouter(tags=["health"])
status_router = APIRouter(tags=["health"])


@status_router.get("/health", response_model=HealthResponse, summary="What runs")
def health(runtime: OptionalRuntimeDep) -> HealthResponse:
    """The model (name, version, the execution providers the live session reports), the index
    (type, live items, snapshot generation), how the copy verdict (`match`) is made with its
    measured error rates, and whether the service is ready. A read key is
    needed when API keys are configured."""
    if runtime is None:
        return HealthResponse(status="starting", ready=False, detail="loading model and store")
    meta, store_error = runtime.meta, None
    try:
        stats: StoreStats | None = runtime.service.store_stats()
    except StoreUnavailable as exc:  # e.g. Milvus unreachable: say so, do not fail
        stats, store_error = None, str(exc)
    ready = runtime.ready.is_set() and stats is not None
    if stats is not None:
        runtime.refresh_gauges(stats)
    problem = runtime.warmup_error or store_error
    return HealthResponse(
        status="ok" if ready else ("degraded" if problem else "starting"),
        ready=ready,
        detail=problem,
        model=ModelHealth(
            name=meta.name,
            version=meta.version,
            architecture=meta.architecture,
            backbone=meta.backbone,
            source=meta.source.kind,
            description=meta.source.description,
            intended_use=meta.intended_use,
            embedding_dim=meta.embedding_dim,
            precision=meta.precision,
            providers=list(runtime.session.active_providers),
            device=runtime.session.device,
        ),
        index=None
        if stats is None
        else IndexHealth(
            type=stats.index_type,
            ntotal=stats.ntotal,
            generation=stats.generation,
            tombstones=stats.tombstones,
            training=stats.training,
            params=stats.index_params,
        ),
        verdict=_verdict(runtime),
    )


def _verdict(runtime: Runtime) -> VerdictHealth:
    rule = runtime.service.verdict.rule
    # The measured rates belong to the rule that was measured: shown only when the live rule is
    # the shipped one.
    shipped = load_rule_file()
    measured = shipped.get("measured") if shipped["rule"] == rule.as_dict() else None
    return VerdictHealth(method=describe(rule), rule=rule.as_dict(), measured=measured)


@router.get("/health/live", response_model=LiveResponse, summary="Liveness probe")
def live() -> LiveResponse:
    """The process answers: nothing else is checked (restart only if this fails)."""
    return LiveResponse(status="alive")


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    summary="Readiness probe",
    responses=error_responses(503),
)
def ready(runtime: OptionalRuntimeDep) -> JSONResponse:
    """200 once the model is loaded and warmed up; 503 with Retry-After before. Open (no key)."""
    reason = runtime.not_ready_reason() if runtime is not None else "loading model and store"
    if reason is not None:
        raise NotReady(f"not ready: {reason}")
    return JSONResponse({"status": "ready"})
