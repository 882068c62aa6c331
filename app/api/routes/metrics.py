"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep, OptionalRuntimeDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"}},
)
def metrics(runtime: OptionalRuntimeDep, registry: MetricsDep) -> Response:
    """Request counts and latencies by route, per-stage timings (embed, ANN + re-score,
    re-rank), inference batch sizes and queue depth, items stored."""
    if runtime is not None:
        runtime.refresh_gauges()
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
