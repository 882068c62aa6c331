"""/docs and /redoc in a real browser (Debian's chromium through Playwright, as
tests/app/web/test_search_page.py runs it) against the real server on 127.0.0.1: both render
the API, and neither asks for anything outside this origin (every request is recorded; the
outside ones are refused so the test never depends on the network)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.server import ServerProcess
from workbench.artifacts.tiny_model import write_tiny_model

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

CHROMIUM = os.environ.get("SIMSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]

pytestmark = [
    pytest.mark.skipif(
        not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)),
        reason=f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)",
    ),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("docs_browser")
    (root / "logs").mkdir()
    proc = ServerProcess(root / "data", write_tiny_model(root / "model"), root / "logs")
    proc.start()
    yield proc
    proc.terminate()


def _wait_text(page: Any, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in page.evaluate("() => document.body.innerText"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never shown")


@pytest.mark.parametrize("path", ["/redoc", "/docs"])
def test_docs_render_and_ask_nothing_from_outside(server: ServerProcess, path: str) -> None:
    outside: list[str] = []
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def route(r: Any) -> None:
                if r.request.url.startswith(server.url) or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            # CSP refusals never reach the router: they are console errors.
            page.on(
                "console",
                lambda m: outside.append(m.text) if "Content Security" in m.text else None,
            )
            response = page.goto(server.url + path)
            assert response is not None and response.ok
            _wait_text(page, "Search with an image")
            if path == "/redoc":
                _wait_text(page, "API docs by Redocly")  # the footer whose logo was remote
            time.sleep(1.0)  # let late requests (images, fonts, workers) happen
        finally:
            browser.close()
    assert outside == [], outside
