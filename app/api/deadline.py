"""Per-request deadline: the work of one request (decode, inference queue, search) must finish
within `limits.request_timeout_s`, else the client gets 503 with Retry-After instead of a
connection that hangs while the server is overloaded.

Durable writes are never put under a deadline: a store add that started completes, so a
client never sees a failure for a write that was made durable behind its back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import RequestTimeout


@asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(
            f"{what} did not finish within the {seconds:g} s request deadline (the server is "
            "busy); retry shortly"
        ) from exc
