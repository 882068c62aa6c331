"""/docs (Swagger UI) and /redoc that work without internet.

FastAPI's default pages load their JavaScript and CSS from a CDN, so offline they are blank.
The `fastapi-offline` package (MIT) ships Swagger UI's bundle and CSS and ReDoc's standalone
bundle; they are served from /docs-static, and ReDoc is told not to fetch Google Fonts.

ReDoc's bundle still hard-codes one outside resource, the Redocly logo of its "API docs by
Redocly" footer, an absolute https URL. /redoc therefore loads a copy of the bundle with every
such external logo URL replaced by an empty inline image, and its Content-Security-Policy lets
images, fonts and fetches come only from this origin (or inline data), whatever a later bundle
adds.
"""

from __future__ import annotations

import functools
import logging
import re
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

logger = logging.getLogger(__name__)

DOCS_STATIC_URL = "/docs-static"
# Under the static prefix (open without an API key like the other assets), not a file there.
REDOC_JS_URL = f"{DOCS_STATIC_URL}/redoc.offline.js"
# Any absolute URL of the footer's logo file, whatever host a bundle version names.
EXTERNAL_LOGO_URL = re.compile(r"https?://[^\"'\s]+/logo-mini\.svg")
# A 1x1 transparent SVG as a data: URL (the footer keeps its text, loses its logo).
EMPTY_IMAGE = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
)
# Only what /redoc needs from elsewhere is named: everything else stays on this origin.
REDOC_CONTENT_SECURITY_POLICY = "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"


def _asset_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


@functools.cache
def _redoc_bundle() -> bytes:
    """ReDoc's standalone bundle without its external logo URL (read once, ~1 MB)."""
    text = (_asset_dir() / "redoc.standalone.js").read_text(encoding="utf-8")
    text, replaced = EXTERNAL_LOGO_URL.subn(EMPTY_IMAGE, text)
    if not replaced:
        logger.info("ReDoc bundle names no external logo; served as shipped")
    return text.encode("utf-8")


def add_offline_docs(app: FastAPI) -> None:
    """Routes for /docs, /docs/oauth2-redirect and /redoc over locally served assets. The app
    must be created with docs_url=None and redoc_url=None."""

    # Declared before the static mount, which would otherwise answer its path with a 404.
    @app.get(REDOC_JS_URL, include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            _redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(DOCS_STATIC_URL, StaticFiles(directory=_asset_dir()), name="docs-static")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CONTENT_SECURITY_POLICY
        return page
