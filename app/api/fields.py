"""Unknown or repeated request fields -> 422 naming them and the fields the route accepts.

FastAPI ignores query parameters and form fields a route does not declare, so a misspelt
`-F topk=1` used to return the default 10 results without a word, and a second `file` field was
dropped. JSON bodies refuse unknown keys through their models (`extra="forbid"` in schemas.py);
this module does the same for query parameters and multipart/urlencoded form fields, and tells
the error handler which names a route accepts at any place of its JSON body.

The accepted names are read from the app's own OpenAPI document (what /docs shows), so the check
and the documentation cannot disagree. Routes left out of the schema are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
UNKNOWN = "extra_forbidden"  # pydantic's error type for an unknown key, reused for forms
REPEATED = "repeated_field"


def _operation(request: Request) -> dict[str, Any] | None:
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    if path is None or not getattr(route, "include_in_schema", False):
        return None
    spec = request.app.openapi()
    op: dict[str, Any] | None = spec.get("paths", {}).get(path, {}).get(request.method.lower())
    return op


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref; an `X | None` (anyOf with null) becomes its non-null member."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(spec, node)
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        return _resolve(spec, options[0])
    return schema


def _body_schema(spec: dict[str, Any], op: dict[str, Any], media: str) -> dict[str, Any] | None:
    content = op.get("requestBody", {}).get("content", {})
    if media not in content:
        return None
    return _resolve(spec, content[media].get("schema", {}))


def accepted_body_fields(request: Request, loc: Sequence[str | int]) -> list[str] | None:
    """The keys accepted in the JSON object at `loc` (a validation error's location, without
    its leading 'body' and the unknown key itself); None when that cannot be told."""
    op = _operation(request)
    if op is None:
        return None
    spec = request.app.openapi()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    forms = [m for m in FORM_TYPES if m in op.get("requestBody", {}).get("content", {})]
    media = (content_type if content_type in forms else forms[0]) if forms else "application/json"
    schema = _body_schema(spec, op, media)
    for part in loc:
        if schema is None:
            return None
        if isinstance(part, int):
            items = schema.get("items")
            schema = _resolve(spec, items) if isinstance(items, dict) else None
        else:
            prop = schema.get("properties", {}).get(part)
            schema = _resolve(spec, prop) if isinstance(prop, dict) else None
    if schema is None or "properties" not in schema:
        return None
    return list(schema["properties"])


def accepted_query_parameters(request: Request) -> list[str] | None:
    op = _operation(request)
    if op is None:
        return None
    return [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]


def _takes_many(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    return _resolve(spec, schema).get("type") == "array"


async def reject_unknown_fields(request: Request) -> None:
    """App-wide dependency: 422 for query parameters and form fields the route does not
    declare, and for a single-value form field sent more than once."""
    op = _operation(request)
    if op is None:
        return
    spec = request.app.openapi()
    errors: list[dict[str, Any]] = []
    declared = set(accepted_query_parameters(request) or ())
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in declared:
            errors.append(
                {
                    "type": UNKNOWN,
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "input": request.query_params.get(name),
                }
            )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    schema = _body_schema(spec, op, content_type) if content_type in FORM_TYPES else None
    if schema is not None and "properties" in schema:
        # FastAPI has parsed the form before the dependencies run; Starlette caches it.
        form = await request.form()
        fields = schema["properties"]
        unknown = False
        for name in dict.fromkeys(form.keys()):
            if name not in fields:
                unknown = True
                errors.append(
                    {
                        "type": UNKNOWN,
                        "loc": ("body", name),
                        "msg": "unknown form field",
                        "input": None,
                    }
                )
            elif len(form.getlist(name)) > 1 and not _takes_many(spec, fields[name]):
                errors.append(
                    {
                        "type": REPEATED,
                        "loc": ("body", name),
                        "msg": f"sent {len(form.getlist(name))} times; this field takes one value",
                        "input": None,
                    }
                )
        if unknown:
            # A misspelt required field is also a missing one: say both.
            errors += [
                {"type": "missing", "loc": ("body", name), "msg": "Field required", "input": None}
                for name in schema.get("required", [])
                if name not in form
            ]
    if errors:
        raise RequestValidationError(errors)
