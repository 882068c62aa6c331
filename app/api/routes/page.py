"""The search page: GET / serves app/web/index.html, /ui/* its script and style sheet.

Everything is a file in the repository (no CDN, no build step). The page is served with a
strict Content-Security-Policy: scripts and styles only from this origin (no inline script,
no eval), images only from here or blob: URLs the page makes from fetched thumbnails, no
frames, forms or plugins. The page renders ids and metadata with textContent only, so the
policy is a second wall, not the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PAGE_ASSETS_URL = "/ui"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter()


@router.get("/", include_in_schema=False)
def search_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


class _PageAssets(StaticFiles):
    """The page's script and style sheet, with the same security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response: Any = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def add_search_page(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(PAGE_ASSETS_URL, _PageAssets(directory=WEB_DIR), name="page-assets")
