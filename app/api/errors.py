"""Maps domain exceptions to HTTP responses. The only place HTTP status codes are chosen for
domain errors; routes raise domain exceptions or HTTPException, never bare 500s."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app import errors

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "2"

_STATUS: dict[type[errors.SimSearchError], int] = {
    errors.InvalidImage: 400,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidRequest: 422,
    errors.NotFound: 404,
    errors.NotReady: 503,
    errors.Overloaded: 503,
}


def status_for(exc: errors.SimSearchError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.SimSearchError)
    status = status_for(exc)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    if status >= 500 and status != 503:
        logger.error("internal error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.SimSearchError, _domain_error)
