"""Offline API docs, the OpenAPI manual, the search page's headers, and the details a client
gets when it sends an image the wrong way."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.api.routes.page import CONTENT_SECURITY_POLICY


def _local_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_and_redoc_load_nothing_from_outside(api_client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        resp = api_client.get(page)
        assert resp.status_code == 200
        assets = _local_assets(resp.text)
        assert assets, page
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from outside"
            asset = api_client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert "googleapis" not in resp.text and "cdn." not in resp.text
        if page == "/redoc":
            # The shipped bundle fetches the Redocly footer logo from an outside host.
            bundle = next(api_client.get(u).text for u in assets if u.endswith(".js"))
            assert "cdn.redoc.ly" not in bundle and "redocly logo" in bundle
            csp = dict(
                d.strip().split(" ", 1) for d in resp.headers["content-security-policy"].split(";")
            )
            assert csp["img-src"] == "'self' data:" and csp["connect-src"] == "'self'"


def test_every_route_has_a_description_and_examples(api_client: TestClient) -> None:
    spec = api_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert op.get("summary"), (method, path)
            assert op.get("description"), (method, path)
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok is not None, (method, path)
            content = ok.get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                assert schemas[name].get("examples"), f"{name} ({method} {path}) has no example"
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                name = body["schema"]["$ref"].rsplit("/", 1)[-1]
                assert schemas[name].get("examples"), f"request {name} has no example"
    assert schemas["ErrorResponse"].get("examples")


def test_page_is_served_with_a_strict_policy(api_client: TestClient) -> None:
    resp = api_client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    # No inline script or style in the page itself (the policy would block them anyway).
    assert re.search(r"<script(?![^>]*\bsrc=)", resp.text) is None
    assert "<style" not in resp.text and " style=" not in resp.text
    for url in _local_assets(resp.text):
        if url.startswith("/ui/"):
            asset = api_client.get(url)
            assert asset.status_code == 200
            assert asset.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_page_script_never_writes_html() -> None:
    """The page renders ids and metadata as text: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval anywhere in its script."""
    from app.api.routes.page import WEB_DIR

    script = (WEB_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script


def test_raw_body_or_wrong_field_name_says_multipart(api_client: TestClient) -> None:
    resp = api_client.post(
        "/search", content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"}
    )
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "multipart/form-data" in detail and "'file'" in detail and "image/jpeg" in detail
    resp = api_client.post("/search", files={"image": ("q.jpg", b"\xff\xd8\xff", "image/jpeg")})
    assert resp.status_code == 422
    assert "no field 'file'" in resp.json()["detail"]
    resp = api_client.post("/index", files={"file": ("q.jpg", b"\xff\xd8\xff", "image/jpeg")})
    assert resp.status_code == 422
    assert "'files'" in resp.json()["detail"]
    resp = api_client.post("/index", json={"files": []})
    assert resp.status_code == 422
    assert "multipart/form-data" in resp.json()["detail"]
