"""Hostile input against the real server: each malformed request gets the right 4xx and a
`detail` naming the problem; the server stays healthy, nothing stored is lost, and its peak
memory stays bounded while decompression bombs and oversized images arrive.

Decisions recorded here (and in the README):
- a 1x1 image is accepted: preprocessing upscales images smaller than the model's min_side;
- multi-frame GIF / multi-page TIFF are accepted (first frame), as are CMYK and 16-bit images;
- an image whose header declares more than max_pixels is refused with 413 before any pixel
  is decoded; a bbox reaching outside the decoded image is 422.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.reliability import images
from tests.reliability.clients import DIM, item_url, small_image, top_hit, unit_vectors
from tests.reliability.server import REPO, ServerProcess

logger = logging.getLogger(__name__)

MAX_UPLOAD = 2 * 1024 * 1024
MAX_FILES = 4
# Peak resident memory the server may reach while the whole corpus runs (bombs included).
PEAK_RSS_LIMIT = int(1.5 * 2**30)


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    needle: str  # must appear (case-insensitively) in the response's detail
    send: Callable[[httpx.Client], httpx.Response]


def _search_file(
    name: str, data: bytes, ctype: str, **form: str
) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.post("/search", files={"file": (name, data, ctype)}, data=form)


def _search_form(**form: str) -> Callable[[httpx.Client], httpx.Response]:
    image = small_image(1)
    return lambda c: c.post("/search", files={"file": ("q.png", image, "image/png")}, data=form)


def _json(path: str, text: str) -> Callable[[httpx.Client], httpx.Response]:
    """Raw JSON text (so NaN, Infinity and huge numbers go over the wire as written)."""
    return lambda c: c.post(
        path, content=text.encode("utf-8", "surrogatepass"),
        headers={"content-type": "application/json"},
    )


def _vector_text(values: list[str]) -> str:
    return "[" + ",".join(values) + "]"


def _good_vector() -> list[str]:
    return ["0.1"] * DIM


def _index_files(
    files: list[tuple[str, tuple[str, bytes, str]]], **form: Any
) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.post("/index", files=files, data=form)


def _chunked(path: str, total: int) -> Callable[[httpx.Client], httpx.Response]:
    """A body sent chunked (no Content-Length) that grows past the route's limit."""

    def gen() -> Iterator[bytes]:
        yield b'{"vector": ['
        chunk = b"0.1," * 16384
        for _ in range(total // len(chunk) + 1):
            yield chunk

    return lambda c: c.post(path, content=gen(), headers={"content-type": "application/json"})


PNG_OK = images.encode(images.photo_like(), "PNG")
JPEG_OK = images.encode(images.photo_like(), "JPEG", quality=90)


def _cases() -> list[Case]:
    v = _good_vector()
    nan_vec = ["NaN", *v[1:]]
    inf_vec = ["Infinity", *v[1:]]
    return [
        # ---- bodies and files that are not images
        Case("empty body", 422, "file", lambda c: c.post("/search")),
        Case("empty JSON body", 422, "body", _json("/search/vector", "")),
        Case("empty file", 422, "empty", _search_file("e.jpg", b"", "image/jpeg")),
        Case(
            "random bytes as image/jpeg",
            400,
            "not a decodable image",
            _search_file("r.jpg", np.random.default_rng(0).bytes(4096), "image/jpeg"),
        ),
        Case(
            "truncated JPEG",
            400,
            "truncated",
            _search_file("t.jpg", JPEG_OK[: len(JPEG_OK) // 2], "image/jpeg"),
        ),
        Case(
            "truncated PNG",
            400,
            "png",
            _search_file("t.png", PNG_OK[: len(PNG_OK) // 2], "image/png"),
        ),
        Case(
            "text with an image extension",
            400,
            "not a decodable image",
            _search_file("notes.jpg", b"just some text, not a picture\n" * 20, "image/jpeg"),
        ),
        Case("SVG by content type", 415, "content type", _search_file("a.svg", images.SVG,
                                                                       "image/svg+xml")),
        Case("SVG posing as PNG", 415, "svg", _search_file("a.png", images.SVG, "image/png")),
        Case("text/plain upload", 415, "content type",
             _search_file("a.txt", b"hello", "text/plain")),
        Case(
            "PDF posing as JPEG",
            415,
            "pdf",
            _search_file("a.jpg", b"%PDF-1.7\n" + b"0" * 200, "image/jpeg"),
        ),
        # ---- decompression bombs and oversized images
        Case(
            "PNG header declaring 100000x100000",
            413,
            "pixels",
            _search_file("bomb.png", images.png_declaring(100_000, 100_000), "image/png"),
        ),
        Case(
            "GIF header declaring 65535x65535",
            413,
            "pixels",
            _search_file("bomb.gif", images.gif_declaring(65_535, 65_535), "image/gif"),
        ),
        Case(
            "PNG declaring 6000x6000 with no pixel data",
            400,
            "truncated",
            _search_file("short.png", images.png_declaring(6000, 6000), "image/png"),
        ),
        Case(
            "enormous valid image (8000x6000 > max_pixels)",
            413,
            "pixels",
            _search_file("huge.png", images.huge_bilevel_png(8000, 6000), "image/png"),
        ),
        Case(
            "upload over the size limit",
            413,
            "limit",
            _search_file("big.jpg", b"\xff\xd8" + b"\x00" * MAX_UPLOAD, "image/jpeg"),
        ),
        Case(
            "chunked JSON body past the route limit",
            413,
            "byte limit",
            _chunked("/search/vector", 2 * 1024 * 1024),
        ),
        # ---- missing fields, wrong types
        Case("search without a file", 422, "file", lambda c: c.post("/search",
                                                                     data={"top_k": "3"})),
        Case("index without files", 422, "files", lambda c: c.post("/index",
                                                                    data={"ids": "a"})),
        Case("index/vectors without items", 422, "items", _json("/index/vectors", "{}")),
        Case("top_k not a number", 422, "top_k", _search_form(top_k="ten")),
        Case("vector not a list", 422, "vector", _json("/search/vector", '{"vector": "abc"}')),
        Case("vector of strings", 422, "vector",
             _json("/search/vector", '{"vector": ["a", "b"]}')),
        Case("items not a list", 422, "items", _json("/index/vectors", '{"items": "x"}')),
        Case("malformed JSON", 422, "not valid JSON", _json("/search/vector", '{"vector": [1,')),
        Case(
            "multipart without a boundary",
            400,
            "boundary",
            lambda c: c.post(
                "/search", content=b"xx", headers={"content-type": "multipart/form-data"}
            ),
        ),
        # ---- out-of-range numbers
        Case("top_k 0", 422, "top_k", _search_form(top_k="0")),
        Case("top_k negative", 422, "top_k", _search_form(top_k="-3")),
        Case("top_k huge", 422, "top_k", _search_form(top_k="1000000000")),
        Case(
            "top_k beyond 64 bits (JSON)",
            422,
            "top_k",
            _json("/search/vector", f'{{"vector": {_vector_text(v)}, "top_k": {10**30}}}'),
        ),
        Case("nprobe 0", 422, "nprobe", _search_form(nprobe="0")),
        Case("score_threshold 2", 422, "score_threshold", _search_form(score_threshold="2")),
        Case("rerank unknown", 422, "rerank", _search_form(rerank="magic")),
        Case("rerank_top_m 1", 422, "rerank_top_m", _search_form(rerank_top_m="1")),
        # ---- bbox
        Case("bbox not numbers", 422, "bbox", _search_form(bbox="a,b,c,d")),
        Case("bbox three numbers", 422, "bbox", _search_form(bbox="1,2,3")),
        Case("bbox inverted", 422, "bbox", _search_form(bbox="50,40,10,10")),
        Case("bbox negative", 422, "bbox", _search_form(bbox="-5,0,10,10")),
        Case("bbox NaN", 422, "bbox", _search_form(bbox="nan,0,10,10")),
        Case(
            "bbox fully outside the 64x48 image",
            422,
            "outside the 64x48 image",
            _search_form(bbox="5000,5000,6000,6000"),
        ),
        Case(
            "bbox partly outside the 64x48 image",
            422,
            "outside the 64x48 image",
            _search_form(bbox="0,0,100,100"),
        ),
        # ---- vectors
        Case(
            "vector of the wrong dimension",
            422,
            f"{DIM} numbers",
            _json("/search/vector", f'{{"vector": {_vector_text(v[:-1])}}}'),
        ),
        Case("vector with NaN", 422, "NaN",
             _json("/search/vector", f'{{"vector": {_vector_text(nan_vec)}}}')),
        Case("vector with Infinity", 422, "infinity",
             _json("/search/vector", f'{{"vector": {_vector_text(inf_vec)}}}')),
        Case(
            "vector overflowing float32",
            422,
            "infinity",
            _json("/search/vector", f'{{"vector": {_vector_text(["1e39", *v[1:]])}}}'),
        ),
        Case("zero vector", 422, "zeros",
             _json("/search/vector", f'{{"vector": {_vector_text(["0"] * DIM)}}}')),
        Case(
            "indexed vector with NaN",
            422,
            "NaN",
            _json("/index/vectors", f'{{"items": [{{"id": "n", "vector": '
                                    f"{_vector_text(nan_vec)}}}]}}"),
        ),
        # ---- ids
        Case("unknown id", 404, "no item", lambda c: c.get(item_url("never-stored"))),
        Case("delete unknown id", 404, "no item", lambda c: c.delete(item_url("never-stored"))),
        Case("empty id", 422, "non-empty", lambda c: c.get("/items/")),
        Case("huge id", 422, "longer than", lambda c: c.get(item_url("x" * 10_000))),
        Case(
            "huge id when indexing",
            422,
            "longer than",
            _json("/index/vectors", json.dumps(
                {"items": [{"id": "x" * 10_000, "vector": [0.1] * DIM}]})),
        ),
        Case(
            "id with a control character",
            422,
            "control",
            _json("/index/vectors", json.dumps(
                {"items": [{"id": "a\u0000b", "vector": [0.1] * DIM}]})),
        ),
        Case(
            "id with a lone surrogate (not UTF-8)",
            422,
            "items.0.id",
            _json("/index/vectors", '{"items": [{"id": "a\\ud800b", "vector": '
                                    f"{_vector_text(v)}}}]}}"),
        ),
        Case(
            "non-UTF-8 bytes in the body",
            422,
            "not valid JSON: it is not UTF-8",
            lambda c: c.post("/index/vectors", content=b'{"items": [{"id": "\xff\xfe"}]}',
                             headers={"content-type": "application/json"}),
        ),
        Case(
            "percent-encoded non-UTF-8 id in the path",
            404,
            "no item",
            lambda c: c.get("/items/%FF%FE"),
        ),
        Case(
            "duplicate ids",
            422,
            "unique",
            _json("/index/vectors", json.dumps({"items": [
                {"id": "dup", "vector": [0.1] * DIM}, {"id": "dup", "vector": [0.2] * DIM}]})),
        ),
        Case(
            "ids count differs from files",
            422,
            "ids",
            _index_files([("files", ("a.png", small_image(3), "image/png"))],
                         ids=json.dumps(["a", "b"])),
        ),
        Case(
            "too many files",
            422,
            "files",
            _index_files([("files", (f"{i}.png", small_image(i), "image/png"))
                          for i in range(MAX_FILES + 1)]),
        ),
        # ---- metadata
        Case(
            "oversized metadata",
            422,
            "metadata",
            _json("/index/vectors", json.dumps({"items": [
                {"id": "m", "vector": [0.1] * DIM, "metadata": {"k": "v" * 20_000}}]})),
        ),
        Case(
            "metadata not an object",
            422,
            "metadata",
            _index_files([("files", ("a.png", small_image(4), "image/png"))],
                         metadata=json.dumps([[1, 2]])),
        ),
        Case(
            "metadata not JSON",
            422,
            "metadata",
            _index_files([("files", ("a.png", small_image(5), "image/png"))],
                         metadata="{nope"),
        ),
        # ---- browsing, more-like-this, filters
        Case("raw image body to /search", 422, "multipart/form-data",
             lambda c: c.post("/search", content=JPEG_OK,
                              headers={"content-type": "image/jpeg"})),
        Case("upload in the wrong field", 422, "field 'files'",
             _index_files([("image", ("a.png", small_image(6), "image/png"))])),
        Case("garbage cursor", 422, "cursor",
             lambda c: c.get("/items", params={"cursor": "\u00ff" * 40})),
        Case("page size 0", 422, "limit", lambda c: c.get("/items", params={"limit": "0"})),
        Case("by-id unknown id", 404, "no item",
             _json("/search/by-id", json.dumps({"id": "../../etc/passwd"}))),
        Case("thumbnail of an unknown id", 404, "no item",
             lambda c: c.get(item_url("../../etc/passwd") + "/thumbnail")),
        Case("filter with 17 keys", 422, "at most",
             _json("/search/by-id", json.dumps({"id": "keep-0",
                                                 "filter": {f"k{i}": i for i in range(17)}}))),
        Case("filter key with quotes", 422, "filter key",
             _json("/search/vector", json.dumps({"vector": [0.1] * DIM,
                                                  "filter": {"a' OR 1=1 --": 1}}))),
        Case("filter value an object", 422, "filter",
             _search_form(filter=json.dumps({"a": {"$ne": 1}}))),
        Case("filter not JSON", 422, "filter is not valid JSON", _search_form(filter="{a:")),
        Case("rerank_top_m without superglobal", 422, "superglobal",
             _search_form(rerank_top_m="8")),
    ]


CASES = _cases()
# Accepted on purpose (status 200): odd but valid images.
ACCEPTED = {
    "1x1 PNG": images.encode(images.photo_like((1, 1)), "PNG"),
    "multi-frame GIF": images.multi_frame_gif(),
    "multi-page TIFF": images.multi_page_tiff(),
    "CMYK JPEG": images.cmyk_jpeg(),
    "16-bit grayscale PNG": images.gray16("PNG"),
    "16-bit grayscale TIFF": images.gray16("TIFF"),
    # 36 Mpx of one colour in ~120 KB: decodes to 108 MB, under max_pixels (40 Mpx).
    "6000x6000 zlib bomb under max_pixels": images.zlib_bomb_png(6000),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("hostile")
    (base / "logs").mkdir()
    srv = ServerProcess(
        base / "data",
        tiny_model,
        base / "logs",
        limits__max_upload_bytes=MAX_UPLOAD,
        limits__max_files_per_request=MAX_FILES,
    )
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def stored(server: ServerProcess) -> dict[str, np.ndarray]:
    """Items stored before the corpus runs; all must survive it."""
    vecs = unit_vectors(np.random.default_rng(42), 20)
    items = {f"keep-{i}": v for i, v in enumerate(vecs)}
    with server.client() as client:
        body = {"items": [{"id": k, "vector": v.tolist()} for k, v in items.items()]}
        assert client.post("/index/vectors", json=body).status_code == 201
    return items


def test_corpus_is_large_enough() -> None:
    assert len(CASES) + len(ACCEPTED) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request_gets_a_clear_4xx(
    server: ServerProcess, stored: dict[str, np.ndarray], case: Case
) -> None:
    with server.client() as client:
        resp = case.send(client)
        assert resp.status_code == case.status, (case.name, resp.status_code, resp.text[:500])
        body = resp.json()
        assert isinstance(body.get("detail"), str), body
        assert case.needle.lower() in body["detail"].lower(), (case.name, body["detail"])
        assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_odd_but_valid_images_are_accepted(
    server: ServerProcess, stored: dict[str, np.ndarray], name: str
) -> None:
    with server.client() as client:
        resp = client.post(
            "/search", files={"file": ("odd", ACCEPTED[name], "application/octet-stream")}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["results"], "the stored items should be found"


def test_client_names_never_become_paths(server: ServerProcess, tmp_path: Path) -> None:
    """Ids and upload file names are opaque strings: stored in sqlite, never used as paths."""
    store = server.data_dir / "store"
    outside = sorted(p.name for p in server.data_dir.parent.iterdir())
    before = {p.name for p in store.iterdir()}
    hostile_ids = ["../../etc/passwd", "/etc/shadow", "..\\..\\boot.ini", "a/../../b", "~root"]
    vecs = unit_vectors(np.random.default_rng(5), len(hostile_ids))
    with server.client() as client:
        body = {"items": [{"id": i, "vector": v.tolist()} for i, v in zip(hostile_ids, vecs,
                                                                           strict=True)]}
        resp = client.post("/index/vectors", json=body)
        assert resp.status_code == 201 and resp.json()["ids"] == hostile_ids
        resp = client.post(
            "/index",
            files=[("files", ("../../../../tmp/evil.png", small_image(9), "image/png"))],
            data={"ids": "../../../tmp/evil"},
        )
        assert resp.status_code == 201 and resp.json()["ids"] == ["../../../tmp/evil"]
        for item_id, vec in zip(hostile_ids, vecs, strict=True):
            got = client.get(item_url(item_id))
            assert got.status_code == 200 and got.json()["id"] == item_id
            assert top_hit(client, vec)["id"] == item_id
            assert client.delete(item_url(item_id)).status_code == 200
    after = {p.name for p in store.iterdir()}
    # The store holds the same kinds of files as before: nothing named after a client string.
    assert {_kind(n) for n in after} <= {_kind(n) for n in before} | {"index", "manifest"}
    assert sorted(p.name for p in server.data_dir.parent.iterdir()) == outside
    # Nothing named after the hostile strings, in the data tree or where the server runs.
    assert not list(server.data_dir.parent.rglob("evil*")) and not list(REPO.glob("evil*"))


def test_non_utf8_multipart_id_stays_an_opaque_id(server: ServerProcess) -> None:
    """Starlette reads multipart fields that are not UTF-8 as Latin-1: the id is stored as that
    text (an opaque string like any other), never refused with a 500 nor used as a path."""
    with server.client() as client:
        resp = client.post(
            "/index",
            files=[("files", ("a.png", small_image(2), "image/png"))],
            data={"ids": b"\xff\xfe"},
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["ids"] == ["\u00ff\u00fe"]
        assert client.get(item_url("\u00ff\u00fe")).status_code == 200
        assert client.delete(item_url("\u00ff\u00fe")).status_code == 200


def _kind(name: str) -> str:
    for prefix in ("catalog.sqlite", "vectors.f16", "store.lock", "manifest", "index-"):
        if name.startswith(prefix):
            return prefix.rstrip("-")
    return name


def test_server_healthy_nothing_lost_memory_bounded(
    server: ServerProcess, stored: dict[str, np.ndarray]
) -> None:
    """Runs last in this module: after the whole corpus (bombs included)."""
    with server.client() as client:
        assert client.get("/health/ready").status_code == 200
        for item_id, vec in stored.items():
            assert client.get(item_url(item_id)).status_code == 200
            assert top_hit(client, vec)["id"] == item_id
    peak = server.peak_rss_bytes()
    if peak is None:
        pytest.skip("no /proc/<pid>/status on this platform")
    logger.info(
        "hostile corpus: %d refused cases + %d accepted odd images; server peak RSS %.0f MiB",
        len(CASES),
        len(ACCEPTED),
        peak / 2**20,
    )
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    assert "Traceback" not in server.log()
