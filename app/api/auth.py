"""API keys: who may call what.

Enforced by `ApiKeyAuth`, a pure ASGI middleware, before any route runs and before the body
is read, so an unauthenticated client can neither make us parse a large upload nor learn from
a 422 what a valid request looks like. The routes only *declare* the schemes
(`security_dependencies`) so that the OpenAPI schema says how to authenticate.

Scopes: a "read" key may search, read items, `/health` and `/metrics`; a "write" key may also
index and delete. What a request needs is the scope of its route in the policy table
(`app/api/policy.py`): anything that is not a known read is a write, so a new mutating route is
protected by default. Open without a key: `/health/live` and `/health/ready` (orchestrator
probes carry no credentials and learn only alive/ready), the API description (`/docs`,
`/redoc`, `/openapi.json`: nothing secret, and Swagger UI cannot send a key to fetch it) and
the search page with its static files (`/`, `/ui/*`: it asks the user for a key and sends it).

With no keys configured there is no authentication, and only loopback clients are served
unless `allow_unauthenticated` is set: a second line behind the launcher's refusal to bind a
non-loopback address (`python -m app`), for servers started some other way.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from typing import Annotated

from fastapi import Depends, Security, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.policy import required_scope
from app.config import ApiKey, Settings
from app.config import Scope as KeyScope

logger = logging.getLogger(__name__)

REALM = 'Bearer realm="simsearch"'
HOW_TO_SEND = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _digest(secret: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the key length.
    return hashlib.sha256(secret).digest()


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key`; None if neither."""
    bearer = api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return bearer if bearer is not None else api_key


class KeyRing:
    """The configured keys as digests; `match` compares against every one in constant time."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._entries = [
            (_digest(k.key.get_secret_value().encode("utf-8")), k.scope, k.label(i))
            for i, k in enumerate(keys)
        ]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def match(self, presented: bytes) -> tuple[KeyScope, str] | None:
        digest = _digest(presented)
        found: tuple[KeyScope, str] | None = None
        for entry_digest, scope, label in self._entries:
            # No early exit: every key is compared, whichever matches.
            if hmac.compare_digest(digest, entry_digest) and found is None:
                found = (scope, label)
        return found


def _is_loopback_client(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return True  # a Unix socket or an in-process transport: local by construction
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return True  # not an IP address: not a TCP peer (e.g. the test client)


class ApiKeyAuth:
    """401 without a (valid) key, 403 with a key lacking the scope; see the module doc."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.keys = KeyRing(settings.api_keys)
        self.loopback_only = not self.keys and not settings.allow_unauthenticated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        needed = required_scope(scope["method"], path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        if not self.keys:
            if self.loopback_only and not _is_loopback_client(scope):
                await _reply(
                    send,
                    403,
                    "no API keys are configured, so this server only serves loopback clients; "
                    "set SIMSEARCH_API_KEYS (or SIMSEARCH_ALLOW_UNAUTHENTICATED=true)",
                )
                return
            await self.app(scope, receive, send)
            return
        key = presented_key(scope.get("headers", []))
        if key is None:
            await _reply(send, 401, f"an API key is required: {HOW_TO_SEND}", REALM)
            return
        match = self.keys.match(key)
        if match is None:
            await _reply(
                send, 401, "invalid API key", f'{REALM}, error="invalid_token"'
            )
            return
        granted, label = match
        if needed == "write" and granted != "write":
            await _reply(
                send,
                403,
                f"this API key has the 'read' scope; {scope['method']} {path} needs a key with "
                "the 'write' scope",
            )
            return
        scope.setdefault("state", {})["api_key"] = label
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def _reply(send: Send, status: int, detail: str, challenge: str | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ OpenAPI declaration
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


def _declared(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> None:
    """Declares the two ways to send a key in the schema; ApiKeyAuth has already checked it."""


def security_dependencies(settings: Settings) -> list[params.Depends]:
    """Dependencies to put on protected routers: empty when authentication is off."""
    return [Depends(_declared)] if settings.auth_enabled else []


def log_access_policy(settings: Settings) -> None:
    if settings.api_keys:
        read = sum(k.scope == "read" for k in settings.api_keys)
        logger.info(
            "API keys: %d configured (%d read-only, %d read-write); /health/live, "
            "/health/ready and the API docs are open",
            len(settings.api_keys),
            read,
            len(settings.api_keys) - read,
        )
    elif settings.allow_unauthenticated:
        logger.warning(
            "no API keys configured and SIMSEARCH_ALLOW_UNAUTHENTICATED=true: every client "
            "that reaches this server may search, index and delete"
        )
    else:
        logger.info(
            "no API keys configured: serving loopback clients only (set SIMSEARCH_API_KEYS to "
            "serve others)"
        )
