"""app/api/policy.py: every route of the app has a row in the policy table (adding a route
without one fails here), and the table gives the scopes, body limits and admission the
middlewares enforce."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.routing import Mount

from app.api.policy import POLICIES, RouteLimits, required_scope, rows_for
from app.config import LimitSettings, Settings
from app.main import create_app


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, frozenset[str]]]:
    """(path template, methods) of every route, through included routers and mounts."""
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:  # a router included by include_router (FastAPI >= 0.165)
            yield from _routes(context.included_router.routes, prefix + context.prefix)
        elif isinstance(route, Mount):
            yield f"{prefix}{route.path}/{{path:path}}", frozenset({"GET"})
        else:
            path = getattr(route, "path", None)
            assert path is not None, f"a route the test cannot read: {route!r}"
            yield prefix + path, frozenset(getattr(route, "methods", None) or {"GET"})


def test_every_route_has_a_policy_row(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    found = list(_routes(app.routes))
    assert len(found) >= 20  # the walk reached into the included routers
    for path, methods in found:
        rows = [row for row in POLICIES if row.path == path]
        assert rows, f"{sorted(methods)} {path} has no row in app/api/policy.py POLICIES"
        for method in methods - {"HEAD"}:
            assert any(row.methods is None or method in row.methods for row in rows), (
                f"{method} {path} has no row in app/api/policy.py POLICIES"
            )
    declared = {path for path, _ in found}
    stale = [row.path for row in POLICIES if row.path not in declared]
    assert not stale, f"rows for routes the app does not have: {stale}"


def test_scopes() -> None:
    assert required_scope("GET", "/health/live") is None
    assert required_scope("POST", "/health/ready") is None  # open for any method
    assert required_scope("GET", "/") is None and required_scope("GET", "/ui/app.js") is None
    assert required_scope("POST", "/ui/app.js") == "write"  # static files: safe methods only
    assert required_scope("GET", "/docs-static/redoc.offline.js") is None
    assert required_scope("GET", "/health") == "read"
    assert required_scope("POST", "/search/by-id") == "read"
    assert required_scope("GET", "/items/a/thumbnail") == "read"
    assert required_scope("DELETE", "/items/a%2Fb") == "write"
    assert required_scope("POST", "/items/a") == "write"  # no such route: a write
    assert required_scope("GET", "/not-a-route") == "read"


def test_body_limits_and_admission() -> None:
    limits = LimitSettings()
    route = RouteLimits(limits)
    mib = 1024 * 1024
    assert route.body_limit("/search") == limits.max_upload_bytes + mib
    assert route.body_limit("/index") == (
        (limits.max_upload_bytes + limits.max_metadata_bytes) * limits.max_files_per_request + mib
    )
    assert route.body_limit("/index/vectors") == limits.max_vectors_per_request * 16 * 1024 + mib
    for path in ("/search/vector", "/items/x", "/nowhere"):
        assert route.body_limit(path) == mib
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert not route.admitted(path)
    for path in ("/search", "/index", "/items/x", "/", "/nowhere"):
        assert route.admitted(path)
    # Body limit and admission are per path: every row of one path agrees on them.
    for row in POLICIES:
        assert {(r.body, r.admitted) for r in rows_for(row.path)} == {(row.body, row.admitted)}


def test_the_api_description_declares_keys_exactly_where_the_table_wants_them(
    tmp_path: Path,
) -> None:
    """With keys configured, an operation in /openapi.json carries the security schemes
    exactly when its policy row needs a key."""
    keys = [{"key": "r" * 20, "scope": "read"}, {"key": "w" * 20, "scope": "write"}]
    app = create_app(Settings(data_dir=tmp_path, api_keys=keys))
    spec = app.openapi()
    checked = 0
    for template, operations in spec["paths"].items():
        path = re.sub(r"\{[^}]+\}", "some-id", template)
        for method, operation in operations.items():
            needs_key = required_scope(method.upper(), path) is not None
            assert bool(operation.get("security")) == needs_key, (method, template)
            checked += 1
    assert checked >= 12
