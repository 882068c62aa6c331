"""Maps exceptions to HTTP responses. The only place HTTP status codes are chosen for domain
errors; routes raise domain exceptions or HTTPException, never bare 500s.

Every error body has one shape, `ErrorResponse`: `{"detail": "<what was wrong and what is
accepted>"}`, plus `errors` (one entry per invalid field) for request validation failures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException

from app import errors
from app.api.fields import FORM_TYPES, UNKNOWN, accepted_body_fields, accepted_query_parameters
from app.api.schemas import ErrorResponse, FieldError

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
    errors.RequestTimeout: 503,
}

_DESCRIPTIONS = {
    400: "The upload is not a decodable image, or the request body cannot be parsed",
    401: "No API key, or an invalid one (see WWW-Authenticate)",
    403: "The API key lacks the scope this route needs",
    404: "Unknown item id",
    413: "Upload, request body or decoded image larger than the configured limits",
    415: "Content type or image format not accepted",
    422: "A field is missing, unknown, repeated, of the wrong type or out of range",
    503: "Starting, overloaded (inference queue or in-flight requests full) or past the "
    "request deadline; retry after Retry-After seconds",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "Bearer challenge",
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "string"},
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error codes, all with the common ErrorResponse body."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        out[code] = entry
    return out


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


def _field_errors(raw: Sequence[Any]) -> list[FieldError]:
    out = []
    for err in raw:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(FieldError(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type", ""))))
    return out


def _describe_unknown(request: Request, err: FieldError) -> str:
    """An unknown field or query parameter, with the names accepted at that place."""
    where, *rest = err.loc
    if where == "query":
        accepted = accepted_query_parameters(request)
        text = f"unknown query parameter '{rest[-1]}'"
    else:
        accepted = accepted_body_fields(request, rest[:-1])
        form = request.headers.get("content-type", "").split(";")[0].strip().lower()
        kind = "form field" if form in FORM_TYPES else "field"
        text = f"unknown {kind} '{'.'.join(str(p) for p in rest)}'"
    if accepted is None:
        return text
    return f"{text}; accepted: {', '.join(accepted) or 'none'}"


def _describe(request: Request, err: FieldError, raw: dict[str, Any]) -> str:
    if err.type == UNKNOWN and len(err.loc) >= 2:
        return _describe_unknown(request, err)
    if err.type == "json_invalid":
        reason = (raw.get("ctx") or {}).get("error", "")
        where = err.loc[1] if len(err.loc) > 1 else "?"
        return f"the request body is not valid JSON ({reason} at position {where})"
    where, *rest = err.loc or ["request"]
    name = ".".join(str(p) for p in rest) or str(where)
    kind = {"body": "field", "query": "query parameter", "path": "path parameter"}.get(
        str(where), str(where)
    )
    return f"{kind} '{name}': {err.msg}"


# The upload field of each multipart route: a missing one gets a detail saying how to send it.
UPLOAD_FIELDS = {"/search": "file", "/index": "files"}


def _missing_upload(request: Request, raw: Sequence[Any]) -> str | None:
    """A detail for a request to an upload route without its file field: a raw body, JSON, or
    multipart with the wrong field name all end here."""
    field = UPLOAD_FIELDS.get(request.url.path)
    if field is None:
        return None
    missing = any(
        err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body", field)
        for err in raw
    )
    if not missing:
        return None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower() or "none"
    how = f"curl -F {field}=@photo.jpg"
    if ctype != "multipart/form-data":
        return (
            f"send the image as multipart/form-data in the field '{field}' (e.g. {how}); "
            f"this request's body is {ctype!r}, not a multipart form"
        )
    return (
        f"the multipart form has no field '{field}'; send the image in the field '{field}' "
        f"(e.g. {how})"
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    fields = _field_errors(raw)
    upload_hint = _missing_upload(request, raw)
    if upload_hint is not None:
        # The misspelt field names, if any, follow the hint on where the image goes.
        unknown = [
            _describe(request, f, r) for f, r in zip(fields, raw, strict=True) if f.type == UNKNOWN
        ]
        body = ErrorResponse(detail="; ".join([upload_hint, *unknown]), errors=fields)
        return JSONResponse(body.model_dump(mode="json"), status_code=422)
    parts = [_describe(request, f, r) for f, r in zip(fields, raw, strict=True)]
    detail = "; ".join(parts[:5]) or "invalid request"
    if len(parts) > 5:
        detail += f"; and {len(parts) - 5} more"
    body = ErrorResponse(detail=detail, errors=fields)
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI HTTP errors (404 route, 405, body parsing, our 413) in the common
    shape. FastAPI reports any body it cannot parse as "There was an error parsing the body";
    the cause (e.g. bytes that are not UTF-8) is added so the client learns what was wrong."""
    assert isinstance(exc, HTTPException)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail, status = str(exc.detail), exc.status_code
    cause = exc.__cause__
    if status == 400 and isinstance(cause, UnicodeDecodeError):
        # A JSON body that is not UTF-8 is invalid JSON, answered like any other (422).
        detail, status = f"the request body is not valid JSON: it is not UTF-8 ({cause})", 422
    elif status == 400 and cause is not None and not isinstance(cause, HTTPException):
        detail = f"the request body could not be parsed: {cause}"
    return JSONResponse({"detail": detail}, status_code=status, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Reached only through a bug: log it whole, tell the client nothing internal.
    logger.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
        exc_info=exc,
    )
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.SimSearchError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
