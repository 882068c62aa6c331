"""FastAPI application: `uvicorn app.main:app` (one worker; concurrency via threads + batcher)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api.errors import register_exception_handlers
from app.api.middleware import RequestGuard
from app.api.routes import health, index, items, metrics, search
from app.config import Settings, get_settings
from app.metrics import Metrics
from app.runtime import Runtime

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading can take seconds (ORT graph optimisation, store recovery): off the loop.
        runtime = await run_in_threadpool(Runtime.start, settings, app_metrics)
        app.state.runtime = runtime
        runtime.warm_up_in_background()
        try:
            yield
        finally:
            app.state.runtime = None
            await run_in_threadpool(runtime.close)

    app = FastAPI(
        title="DOLG image-similarity search",
        version="0.1.0",
        description="Find images like this one: DOLG descriptors, FAISS IVF-PQ, SuperGlobal.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.runtime = None
    register_exception_handlers(app)
    for router in (search.router, index.router, items.router, health.router, metrics.router):
        app.include_router(router)
    limits = settings.limits
    # Largest body we could accept: every file at the limit plus form fields and boundaries.
    max_body = (
        limits.max_upload_bytes * limits.max_files_per_request
        + 1024 * 1024
        + (limits.max_metadata_bytes * limits.max_files_per_request)
    )
    max_body = max(max_body, limits.max_vectors_per_request * 16 * 1024)
    app.add_middleware(RequestGuard, metrics=app_metrics, max_body_bytes=max_body)
    return app


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=get_settings().log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


_configure_logging()
app = create_app()
