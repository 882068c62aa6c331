"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer bodies and add a task per call):
request metrics by route template, and an early 413 for bodies declared larger than any
request we accept."""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics


class RequestGuard:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _reject(
                send,
                413,
                f"request body of {declared} bytes is over the {self.max_body_bytes} byte limit",
            )
            self.metrics.requests.labels(method, "unmatched", "413").inc()
            return
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
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


async def _reject(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
