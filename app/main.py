"""FastAPI application: `python -m app` (or `uvicorn app.main:app`; one worker, concurrency via
threads + batcher)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from app.api.auth import ApiKeyAuth, log_access_policy, security_dependencies
from app.api.docs import add_offline_docs
from app.api.errors import error_responses, register_exception_handlers
from app.api.fields import reject_unknown_fields
from app.api.middleware import RequestGuard
from app.api.policy import RouteLimits
from app.api.routes import duplicates, health, index, items, metrics, search
from app.api.routes.page import add_search_page
from app.config import Settings, get_settings
from app.metrics import Metrics
from app.runtime import Runtime

logger = logging.getLogger(__name__)

DESCRIPTION = """Find images like this one: DOLG descriptors, FAISS IVF-PQ, SuperGlobal re-ranking.

A search page for people is at `/`. Programs send images as `multipart/form-data`
(`POST /search` with the field `file`, `POST /index` with the field `files`) or descriptors as
JSON (`/search/vector`, `/index/vectors`). Every error has a JSON `detail` saying what was
wrong and what is accepted. With API keys configured, send `Authorization: Bearer <key>` or
`X-API-Key: <key>`: a read key may search and read, a write key may also index and delete.
A typed Python client and CLI: `python -m simsearch_client --help`.
"""

TAGS = [
    {"name": "search", "description": "Ranked ids with scores and metadata, best first"},
    {"name": "index", "description": "Add images or descriptors; durable when answered"},
    {
        "name": "items",
        "description": "Browse, read, delete stored items and their thumbnails; stored copies",
    },
    {"name": "health", "description": "What runs (model, providers, index) and readiness"},
    {"name": "metrics", "description": "Prometheus metrics"},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log_access_policy(settings)
        # Loading can take seconds (ORT graph optimisation, store recovery): off the loop.
        runtime = await run_in_threadpool(Runtime.start, settings, app_metrics)
        app.state.runtime = runtime
        runtime.warm_up_in_background()
        try:
            yield
        finally:
            # The server has stopped accepting and let in-flight requests finish (SIGTERM).
            app.state.runtime = None
            await runtime.service.duplicates.aclose()
            await run_in_threadpool(runtime.close)

    app = FastAPI(
        title="DOLG image-similarity search",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Served by add_offline_docs from local files instead of a CDN.
        docs_url=None,
        redoc_url=None,
        # A misspelt query parameter or form field is a 422, never silently ignored.
        dependencies=[Depends(reject_unknown_fields)],
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.runtime = None
    register_exception_handlers(app)
    protected = security_dependencies(settings)
    auth_errors = error_responses(401, 403) if settings.auth_enabled else {}
    for router in (
        search.router,
        index.router,
        items.router,
        duplicates.router,
        metrics.router,
        health.status_router,
    ):
        app.include_router(router, dependencies=protected, responses=auth_errors)
    app.include_router(health.router)
    add_search_page(app)
    add_offline_docs(app)
    # Outermost last: CORS (answers preflights, decorates every answer) -> guard (metrics,
    # size, admission) -> API keys -> routes.
    app.add_middleware(ApiKeyAuth, settings=settings)
    app.add_middleware(
        RequestGuard,
        metrics=app_metrics,
        # Body limits and admission per route: app/api/policy.py.
        route_limits=RouteLimits(settings.limits),
        max_in_flight=settings.limits.max_in_flight,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    return app


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=get_settings().log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


_configure_logging()
app = create_app()
