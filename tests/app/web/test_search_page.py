"""The search page in a real browser: Debian's chromium driven by Playwright for Python, against
the real server (`python -m app`, the tiny test model) on 127.0.0.1.

The browser is the system one (`apt-get install chromium`); `playwright install` (which
downloads browsers) is never used. Without chromium or playwright these tests skip and say why.
A screenshot of the results grid is saved to $SIMSEARCH_TEST_ARTIFACTS (default
<repo>/test-artifacts/search-results.png).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import ThumbnailSettings
from tests.reliability.clients import item_url
from tests.reliability.server import REPO, ServerProcess
from workbench.artifacts.tiny_model import write_tiny_model

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

CHROMIUM = os.environ.get("SIMSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
ARTIFACTS = Path(os.environ.get("SIMSEARCH_TEST_ARTIFACTS", REPO / "test-artifacts"))
HOSTILE = '<img src=x onerror="window.__xss=1">'
READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"

pytestmark = [
    pytest.mark.skipif(
        not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)),
        reason=f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)",
    ),
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available"),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("web_model"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _server(tmp: Path, model: Path, **settings: object) -> ServerProcess:
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(tmp / "data", model, logs, **settings)
    server.start()
    return server


def _new_page(browser: Any, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    # Failed loads are recorded with their URL (the console message has none).
    page.on(
        "response",
        lambda resp: (
            errors.append(f"{resp.status} {resp.request.method} {resp.url}")
            if resp.status >= 400
            else None
        ),
    )
    return page


def _wait(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression until truthy. (wait_for_function evaluates strings with eval,
    which the page's Content-Security-Policy forbids; evaluate() is not subject to it.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(f"() => Boolean({expression})"):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expression}")


def _wait_text(page: Any, element_id: str, needle: str, start: bool = False) -> None:
    """Wait until the element's text contains (or, with `start`, begins with) `needle`."""
    method = "startsWith" if start else "includes"
    _wait(page, f"document.getElementById({element_id!r}).textContent.{method}({needle!r})")


def _card_ids(page: Any, grid: str) -> list[str]:
    return page.locator(f"#{grid} .card .id").all_inner_texts()


def test_search_page_end_to_end(tmp_path: Path, tiny_model: Path, browser: Any) -> None:
    server = _server(tmp_path, tiny_model)
    errors: list[str] = []
    try:
        page = _new_page(browser, errors)
        response = page.goto(server.url + "/")
        assert response is not None and response.ok
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        _wait_text(page, "server-info", "items")

        # Index 14 photos through the page (file names as ids, the page's default).
        photos = sorted(PHOTOS.glob("*.jpg"))[:14]
        page.set_input_files("#index-files", [str(p) for p in photos])
        page.click("#index-btn")
        _wait_text(page, "index-status", "indexed 14", start=True)

        # One more with hostile metadata, and a hostile id (sent by the API client).
        hostile_photo = sorted(PHOTOS.glob("*.jpg"))[14]
        page.set_input_files("#index-files", [str(hostile_photo)])
        page.fill("#index-meta", json.dumps({"caption": HOSTILE}))
        page.click("#index-btn")
        _wait_text(page, "index-status", "indexed 1", start=True)
        with server.client() as client:
            resp = client.post(
                "/index",
                files={"files": ("h.jpg", photos[0].read_bytes(), "image/jpeg")},
                data={"ids": json.dumps([HOSTILE])},
            )
            assert resp.status_code == 201, resp.text

        # Search with an uploaded photo: its own thumbnail comes first.
        query = photos[3]
        page.set_input_files("#query-file", str(query))
        page.fill("#top-k", "20")  # every stored item, the hostile ones included
        page.click("#search-btn")
        page.wait_for_selector("#results .card")
        ids = _card_ids(page, "results")
        assert ids[0] == query.name
        # Every card shows the server's verdict: the photo itself is a match.
        verdicts = page.locator("#results .card [data-testid=verdict]").all_inner_texts()
        assert len(verdicts) == len(ids) and verdicts[0] == "match"
        with server.client() as client:
            api = client.post(
                "/search",
                files={"file": (query.name, query.read_bytes(), "image/jpeg")},
                data={"top_k": "20"},
            ).json()["results"]
        assert dict(zip(ids, verdicts, strict=True)) == {
            r["id"]: "match" if r["match"] else "similar" for r in api
        }
        matches = sum(r["match"] for r in api)
        _wait_text(page, "search-status", f"{matches} match")
        assert float(page.locator("#results .card .score").first.inner_text()) > 0.995
        first_thumb = page.locator("#results .card").first.locator(".thumb img")
        first_thumb.wait_for()
        _wait(
            page,
            "document.querySelectorAll('#results .thumb img').length === "
            "document.querySelectorAll('#results .card').length && "
            "[...document.querySelectorAll('#results .thumb img')].every("
            "i => i.complete && i.naturalWidth > 0)",
        )
        assert first_thumb.evaluate("img => img.naturalWidth") <= ThumbnailSettings().long_side
        assert first_thumb.get_attribute("src").startswith("blob:")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#results-panel").screenshot(path=str(ARTIFACTS / "search-results.png"))

        # Hostile metadata and ids are shown as text: no element made, no script run.
        assert len(ids) == 16 and HOSTILE in ids
        metas = page.locator("#results .card .meta").all_inner_texts()
        assert f"caption: {HOSTILE}" in "\n".join(metas)
        assert page.locator("#results img[src='x']").count() == 0
        assert page.locator("#results img:not([src^='blob:'])").count() == 0
        assert page.evaluate("window.__xss") is None

        # Draw a box on the query image: the search is sent with that region.
        frame = page.locator("#preview-img").bounding_box()
        assert frame is not None
        page.mouse.move(frame["x"] + frame["width"] * 0.2, frame["y"] + frame["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(frame["x"] + frame["width"] * 0.7, frame["y"] + frame["height"] * 0.8)
        page.mouse.up()
        box_text = page.locator("#box-text").inner_text()
        assert box_text.startswith("Region: ")
        x1, y1, x2, y2 = (int(v) for v in box_text.removeprefix("Region: ").split(","))
        natural = page.locator("#preview-img").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert 0 < x1 < x2 <= natural[0] and 0 < y1 < y2 <= natural[1]
        page.click("#search-btn")
        _wait_text(page, "search-status", f"(region {x1},{y1},{x2},{y2})")
        # The server searched the region, not the whole photo: the photo no longer scores 1.
        top_score = float(page.locator("#results .card .score").first.inner_text())
        assert top_score < 0.999

        # A metadata filter from the page: only matching items come back (the box stays).
        page.click("#box-clear")
        page.fill("#filter", json.dumps({"caption": HOSTILE}))
        page.click("#search-btn")
        _wait_text(page, "search-status", "1 result in", start=True)
        assert _card_ids(page, "results") == [hostile_photo.name]
        # Nothing passes the filter: the page says so instead of an empty panel.
        page.fill("#filter", json.dumps({"caption": "no such caption"}))
        page.click("#search-btn")
        _wait_text(page, "search-status", "0 results in", start=True)
        assert "No results" in page.locator("#results [data-testid=no-results]").inner_text()
        assert page.locator("#results .card").count() == 0
        page.fill("#filter", "{broken")
        page.click("#search-btn")
        _wait_text(page, "search-status", "filter is not valid JSON")
        page.fill("#filter", "")
        page.click("#search-btn")
        _wait_text(page, "search-status", "16 results")
        assert page.locator("#rerank-note").is_hidden()

        # SuperGlobal asked for in a 16-item store: skipped, and the page says why.
        page.select_option("#rerank", "superglobal")
        page.click("#search-btn")
        page.wait_for_selector("#rerank-note:not([hidden])")
        note = page.locator("#rerank-note").inner_text()
        assert note.startswith("Re-ranking skipped: ") and "16 items" in note
        page.select_option("#rerank", "none")

        # More like this: the item itself is left out of its own results.
        page.locator("#results .card").nth(1).locator("[data-testid=more-like-this]").click()
        _wait_text(page, "results-title", "More like", start=True)
        target = page.locator("#results-title").inner_text().removeprefix("More like ")
        assert target not in _card_ids(page, "results")
        assert len(_card_ids(page, "results")) > 0

        # Browse page by page: 16 items, 12 per page.
        page.click("#browse-btn")
        _wait_text(page, "page-info", "of 16")
        first_page = _card_ids(page, "browse")
        assert len(first_page) == 12 and first_page == sorted(first_page)
        page.click("#next-btn")
        _wait_text(page, "page-info", "items 13", start=True)
        second_page = _card_ids(page, "browse")
        assert len(second_page) == 4 and not set(second_page) & set(first_page)
        page.click("#prev-btn")
        _wait_text(page, "page-info", "items 1–", start=True)

        page.screenshot(path=str(ARTIFACTS / "search-page.png"), full_page=True)

        # Delete one item from the collection view: asked first; "Cancel" keeps it.
        victim = first_page[0]
        page.locator("#browse .card").first.locator("[data-testid=delete]").click()
        page.wait_for_selector("#confirm:not([hidden])")
        assert victim in page.locator("#confirm-text").inner_text()
        page.click("#confirm-no")
        _wait_text(page, "browse-status", f"kept {victim}")
        assert page.locator("#confirm").is_hidden() and _card_ids(page, "browse")[0] == victim
        page.locator("#browse .card").first.locator("[data-testid=delete]").click()
        page.click("#confirm-yes")
        _wait_text(page, "page-info", "of 15")
        assert victim not in _card_ids(page, "browse")
        with server.client() as client:
            assert client.get(item_url(victim)).status_code == 404

        # The policy is enforced, not just sent: an injected inline script does not run.
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__inline = 1'; document.body.append(s); }"
        )
        assert page.evaluate("window.__inline") is None
        assert not [e for e in errors if "Content Security Policy" not in e], errors
    finally:
        server.terminate()


def test_page_asks_for_a_key_and_keeps_it_for_the_tab(
    tmp_path: Path, tiny_model: Path, browser: Any
) -> None:
    server = _server(tmp_path, tiny_model, api_keys=f"{READ_KEY}:read,{WRITE_KEY}:write")
    errors: list[str] = []
    try:
        # The page and its assets are open; the API is not.
        assert httpx.get(server.url + "/").status_code == 200
        assert httpx.get(server.url + "/ui/app.js").status_code == 200
        assert httpx.get(server.url + "/items").status_code == 401

        page = _new_page(browser, errors)
        page.goto(server.url + "/")
        page.wait_for_selector("#key-panel:not([hidden])")
        page.fill("#key-input", READ_KEY)
        page.click("#key-save")
        _wait_text(page, "server-info", "items")
        assert page.locator("#key-panel").is_hidden()
        assert page.evaluate("sessionStorage.getItem('simsearch.apiKey')") == READ_KEY
        assert page.evaluate("localStorage.length") == 0

        # A read key cannot index: the page says which scope is needed.
        page.set_input_files("#index-files", str(sorted(PHOTOS.glob("*.jpg"))[0]))
        page.click("#index-btn")
        _wait_text(page, "index-status", "403")
        assert "write" in page.locator("#index-status").inner_text()

        # Reloading keeps the key (same tab); a new tab asks again.
        page.reload()
        _wait_text(page, "server-info", "items")
        assert page.locator("#key-panel").is_hidden()
        other = browser.new_page()
        other.goto(server.url + "/")
        other.wait_for_selector("#key-panel:not([hidden])")
        other.close()
        assert not [e for e in errors if "401" not in e and "403" not in e], errors
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from workbench.export import run as export_main

    out = tmp_path_factory.mktemp("web_default") / "model"
    export_main(["--default", "--out", str(out)])
    return out


@pytest.mark.torch
def test_verdicts_and_the_duplicates_view(
    tmp_path: Path, default_model: Path, browser: Any
) -> None:
    """The service's default model, real photos and edited copies of them: the page reports
    copies when indexing, says when nothing stored is a copy, and the Duplicates view keeps one
    picture per group and deletes the others after a confirmation."""
    from tests.app.copies import edited_copy

    server = _server(tmp_path, default_model)
    errors: list[str] = []
    astronaut, coffee = PHOTOS / "skimage_astronaut.jpg", PHOTOS / "skimage_coffee.jpg"
    singles = ["skimage_rocket.jpg", "imgaug_quokka.jpg", "mate_ladybird.jpg"]
    copies = tmp_path / "copies"
    copies.mkdir()
    edits = {
        "astronaut-small.jpg": edited_copy(astronaut.read_bytes()),
        "astronaut-q60.jpg": edited_copy(astronaut.read_bytes(), 0.95, 0.5, 60),
        "coffee-copy.jpg": edited_copy(coffee.read_bytes()),
    }
    for name, data in edits.items():
        (copies / name).write_bytes(data)
    try:
        page = _new_page(browser, errors)
        page.goto(server.url + "/")
        _wait_text(page, "server-info", "items")
        originals = [astronaut, coffee, *(PHOTOS / n for n in singles)]
        page.set_input_files("#index-files", [str(p) for p in originals])
        page.click("#index-btn")
        _wait_text(page, "index-status", "indexed 5", start=True)
        assert "copy" not in page.locator("#index-status").inner_text()

        # Copies uploaded later: the page names what each one duplicates.
        page.set_input_files("#index-files", [str(copies / n) for n in edits])
        page.click("#index-btn")
        _wait_text(page, "index-status", "indexed 3", start=True)
        status = page.locator("#index-status").inner_text()
        assert "3 uploads already stored as a copy" in status
        assert f"coffee-copy.jpg (copy of {coffee.name})" in status

        # A photo that was never stored: results, but none is called a copy.
        page.set_input_files("#query-file", str(PHOTOS / "plasma_kite.jpg"))
        page.click("#search-btn")
        _wait_text(page, "search-status", "no copy of the query is stored")
        verdicts = page.locator("#results .card [data-testid=verdict]").all_inner_texts()
        assert verdicts and set(verdicts) == {"similar"}

        # Duplicates: two groups, largest first, the original kept by default.
        page.click("#dups-btn")
        page.wait_for_selector("#dups .group")
        _wait_text(page, "dups-info", "2 groups, 5 items")
        groups = page.locator("#dups .group")
        first_ids = groups.nth(0).locator(".card .id").all_inner_texts()
        assert first_ids[0] == astronaut.name and len(first_ids) == 3
        second_ids = groups.nth(1).locator(".card .id").all_inner_texts()
        assert second_ids == [coffee.name, "coffee-copy.jpg"]
        kept = groups.nth(0).locator("[data-testid=keep]:checked")
        assert kept.get_attribute("value") == astronaut.name
        _wait(page, "document.querySelectorAll('#dups .thumb img').length === 5")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#duplicates-panel").screenshot(path=str(ARTIFACTS / "duplicates.png"))

        # Keep a copy instead, cancel once, then confirm: the other two are deleted.
        groups.nth(0).locator("[data-testid=keep][value='astronaut-small.jpg']").check()
        groups.nth(0).locator("[data-testid=delete-others]").click()
        page.wait_for_selector("#confirm:not([hidden])")
        question = page.locator("#confirm-text").inner_text()
        assert "Keep astronaut-small.jpg and delete 2 copies" in question
        assert astronaut.name in question and "astronaut-q60.jpg" in question
        page.click("#confirm-no")
        _wait_text(page, "dups-status", "nothing deleted")
        with server.client() as client:
            assert client.get(item_url(astronaut.name)).status_code == 200
        groups.nth(0).locator("[data-testid=delete-others]").click()
        page.click("#confirm-yes")
        _wait_text(page, "dups-status", "kept astronaut-small.jpg, deleted 2")
        _wait_text(page, "dups-info", "1 group, 2 items")
        with server.client() as client:
            assert client.get(item_url(astronaut.name)).status_code == 404
            assert client.get(item_url("astronaut-q60.jpg")).status_code == 404
            assert client.get(item_url("astronaut-small.jpg")).status_code == 200

        page.locator("#dups .group [data-testid=delete-others]").click()
        page.click("#confirm-yes")
        page.wait_for_selector("#dups [data-testid=no-duplicates]")
        assert not errors, errors
    finally:
        server.terminate()
