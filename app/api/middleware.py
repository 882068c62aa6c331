"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer bodies and add a task per call):
request metrics by route template, admission control and body-size limits.

- Each path has a body limit (the route policy table, app/api/policy.py: the upload routes
  their files at the limit; /index/vectors its vectors; everything else, /search/vector
  included, 1 MiB). A body declared
  (Content-Length) larger is refused with 413 before it is read; a body streamed without a
  length (chunked) is cut off with 413 as soon as it passes the limit, so no request can make
  the server buffer more (a JSON body costs many times its size once parsed).
- At most `max_in_flight` requests are admitted at once; beyond that the server answers 503
  with Retry-After at once instead of queueing without bound. Probes and metrics are exempt
  (`admitted=False` in the policy table), so an overloaded server still says it is alive.
"""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.policy import RouteLimits
from app.metrics import Metrics

RETRY_AFTER_S = "2"


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        route_limits: RouteLimits,
        max_in_flight: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_limits = route_limits
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # only touched on the event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope.get("path", "")
        max_body = self.route_limits.body_limit(path)
        declared = _content_length(scope)
        if declared is not None and declared > max_body:
            await _reject(
                send,
                413,
                f"request body of {declared} bytes is over the {max_body} byte limit of "
                f"{scope.get('path', '')}",
            )
            self.metrics.requests.labels(method, "unmatched", "413").inc()
            return
        limited = self.route_limits.admitted(path)
        if limited and self.in_flight >= self.max_in_flight:
            await _reject(
                send,
                503,
                f"the server is at its limit of {self.max_in_flight} requests in progress; "
                f"retry after {RETRY_AFTER_S} s",
                retry_after=True,
            )
            self.metrics.requests.labels(method, "unmatched", "503").inc()
            return
        status_holder = {"status": 500}
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    # Surfaces through the body parser as a normal HTTP error response.
                    raise HTTPException(
                        413,
                        f"request body is over the {max_body} byte limit of {scope.get('path')}",
                    )
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        start = time.perf_counter()
        if limited:
            self.in_flight += 1
        try:
            await self.app(scope, receive_limited, send_wrapper)
        finally:
            if limited:
                self.in_flight -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(method, template).observe(
                time.perf_counter() - start
            )
            self.metrics.requests.labels(method, template, str(status_holder["status"])).inc()


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject(send: Send, status: int, detail: str, retry_after: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", RETRY_AFTER_S.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
