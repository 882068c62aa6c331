"""/docs (Swagger UI) and /redoc that work without internet.

FastAPI's default pages load their JavaScript and CSS from a CDN, so offline they are blank.
The `fastapi-offline` package (MIT) ships Swagger UI's bundle and CSS and ReDoc's standalone
bundle; they are served from /docs-static, and ReDoc is told not to fetch Google Fonts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_STATIC_URL = "/docs-static"


def _asset_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def add_offline_docs(app: FastAPI) -> None:
    """Routes for /docs, /docs/oauth2-redirect and /redoc over locally served assets. The app
    must be created with docs_url=None and redoc_url=None."""
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
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
