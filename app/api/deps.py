"""Annotated dependency aliases: routes declare what they need, never reach into app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import NotReady
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.service import SearchService


def get_optional_runtime(request: Request) -> Runtime | None:
    """The runtime once the lifespan has started it; None while the model and store load
    (the health routes report that instead of failing)."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    return runtime


def get_runtime(runtime: Annotated[Runtime | None, Depends(get_optional_runtime)]) -> Runtime:
    if runtime is None:
        raise NotReady("the service is starting: model and store are not loaded yet; retry shortly")
    return runtime


def get_ready_runtime(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Runtime:
    reason = runtime.not_ready_reason()
    if reason is not None:
        raise NotReady(f"not ready: {reason}; retry shortly")
    return runtime


def get_service(runtime: Annotated[Runtime, Depends(get_ready_runtime)]) -> SearchService:
    return runtime.service


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


OptionalRuntimeDep = Annotated[Runtime | None, Depends(get_optional_runtime)]
ServiceDep = Annotated[SearchService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
