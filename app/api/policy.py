"""One table of what each route gets before it runs: the API-key scope it needs, the largest
body it may send and whether it counts against admission (`limits.max_in_flight`).

Read by `auth.ApiKeyAuth` (scope), `middleware.RequestGuard` (body limit, admission) and
`create_app` (body sizes from the limits settings); tests/app/api/test_policy.py fails when a
route of the app has no row here. Both middlewares run before routing, so rows are matched
against the request's path: exact paths first, then templates (`{param}`, `{param:path}`;
mounts as `/prefix/{path:path}`) in the table's order, which follows the routers' order.

Scopes: "open" (no key: orchestrator probes, the API description, the search page and its
static files), "read" (search, read items, /health, /metrics) or "write" (index, delete). A
request that matches no row needs "read" for GET/HEAD/OPTIONS and "write" otherwise, so a new
mutating route is protected by default. An open exact path is open for every method (a wrong
method gets its 405 without a key); an open mount only for GET/HEAD/OPTIONS.

Bodies: "small" 1 MiB (JSON bodies; every path not listed), "image" one upload, "images"
`max_files_per_request` uploads with metadata, "vectors" `max_vectors_per_request` vectors as
JSON; each plus 1 MiB for form fields, boundaries and headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from app.config import LimitSettings
from app.config import Scope as KeyScope

Access = Literal["open", "read", "write"]
BodyKind = Literal["small", "image", "images", "vectors"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GET = frozenset({"GET", "HEAD"})
POST = frozenset({"POST"})
DELETE = frozenset({"DELETE"})
# Form fields, multipart boundaries and headers; also the limit of every "small" body.
BODY_SLACK = 1024 * 1024


@dataclass(frozen=True)
class RoutePolicy:
    # The path as the router declares it ("/items/{item_id:path}"; a mount: "/ui/{path:path}").
    path: str
    # The methods the route answers; None = any (open exact paths).
    methods: frozenset[str] | None
    scope: Access
    body: BodyKind = "small"
    # False: never refused for load, so an overloaded server still says it is alive.
    admitted: bool = True


def _row(path: str, methods: frozenset[str] | None, scope: Access, **kw: object) -> RoutePolicy:
    return RoutePolicy(path, methods, scope, **kw)  # type: ignore[arg-type]


POLICIES: tuple[RoutePolicy, ...] = (
    # search
    _row("/search", POST, "read", body="image"),
    _row("/search/vector", POST, "read"),
    _row("/search/by-id", POST, "read"),
    # index
    _row("/index", POST, "write", body="images"),
    _row("/index/vectors", POST, "write", body="vectors"),
    # items
    _row("/items", GET, "read"),
    # Before the item itself, as in the router: ids may contain "/".
    _row("/items/{item_id:path}/thumbnail", GET, "read"),
    _row("/items/{item_id:path}", GET, "read"),
    _row("/items/{item_id:path}", DELETE, "write"),
    _row("/duplicates", GET, "read"),
    # health and metrics: never refused for load
    _row("/health", GET, "read", admitted=False),
    _row("/health/live", None, "open", admitted=False),
    _row("/health/ready", None, "open", admitted=False),
    _row("/metrics", GET, "read", admitted=False),
    # the search page and the API description
    _row("/", None, "open"),
    _row("/ui/{path:path}", SAFE_METHODS, "open"),
    _row("/openapi.json", None, "open"),
    _row("/docs", None, "open"),
    _row("/docs/oauth2-redirect", None, "open"),
    _row("/redoc", None, "open"),
    _row("/docs-static/redoc.offline.js", SAFE_METHODS, "open"),
    _row("/docs-static/{path:path}", SAFE_METHODS, "open"),
)


def _pattern(path: str) -> re.Pattern[str]:
    """A route template as a regex: {name} one segment, {name:path} the rest of the path."""
    out, pos = "", 0
    for m in re.finditer(r"\{([A-Za-z_]\w*)(:path)?\}", path):
        out += re.escape(path[pos : m.start()]) + (".*" if m.group(2) else "[^/]+")
        pos = m.end()
    return re.compile(out + re.escape(path[pos:]) + r"\Z")


_EXACT = {p.path: [q for q in POLICIES if q.path == p.path] for p in POLICIES if "{" not in p.path}
_TEMPLATED = [(p, _pattern(p.path)) for p in POLICIES if "{" in p.path]


def rows_for(path: str) -> list[RoutePolicy]:
    """The rows of the route `path` belongs to (one per method group), [] for an unknown path."""
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    for policy, pattern in _TEMPLATED:
        if pattern.match(path):
            return [q for q in POLICIES if q.path == policy.path]
    return []


def required_scope(method: str, path: str) -> KeyScope | None:
    """The key scope a request needs; None for the open routes."""
    rows = rows_for(path)
    for row in rows:
        if row.methods is None or method in row.methods:
            return None if row.scope == "open" else row.scope
    return "read" if method in SAFE_METHODS else "write"


def body_limits(limits: LimitSettings) -> dict[BodyKind, int]:
    """Bytes each kind of body may have under `limits`."""
    upload = limits.max_upload_bytes
    return {
        "small": BODY_SLACK,
        "image": upload + BODY_SLACK,
        # Every file at the limit plus its metadata.
        "images": (upload + limits.max_metadata_bytes) * limits.max_files_per_request + BODY_SLACK,
        # ~16 KiB of JSON per item (a 512-d vector as text is ~11 KiB).
        "vectors": limits.max_vectors_per_request * 16 * 1024 + BODY_SLACK,
    }


class RouteLimits:
    """Per-request body limit and admission from the table, with sizes from the settings."""

    def __init__(self, limits: LimitSettings) -> None:
        self.sizes = body_limits(limits)

    def body_limit(self, path: str) -> int:
        rows = rows_for(path)
        # Old behaviour kept: a path's limit does not depend on the method.
        return self.sizes[rows[0].body] if rows else self.sizes["small"]

    @staticmethod
    def admitted(path: str) -> bool:
        rows = rows_for(path)
        return not rows or rows[0].admitted
