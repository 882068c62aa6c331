"""The Python client and CLI against the real server (`python -m app`, tiny model, loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simsearch_client import ApiError, SimSearchClient
from simsearch_client.cli import main as cli_main
from tests.reliability.server import REPO, ServerProcess

PHOTOS = REPO.parent / "shared" / "data" / "photos"
pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _photo_folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))[:n]):
        target = folder / "sub" / photo.name if i % 2 else folder / photo.name
        shutil.copy(photo, target)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_client_covers_every_route(client: SimSearchClient) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))[:4]
    result = client.index_images(photos, ids=[p.name for p in photos])
    assert result.ids == [p.name for p in photos] and result.replaced == []
    assert result.files == [(p.name, p.name) for p in photos]
    again = client.index_images([photos[0]], ids=[photos[0].name], metadata=[{"album": "a"}])
    assert again.replaced == [photos[0].name]

    hits = client.search(photos[2], top_k=3).results
    assert hits[0].id == photos[2].name and hits[0].score == pytest.approx(1.0, abs=1e-2)
    more = client.search_by_id(photos[2].name, top_k=3).results
    assert photos[2].name not in [h.id for h in more] and len(more) == 3

    item = client.get_item(photos[0].name, include_vector=True)
    assert item.metadata == {"album": "a", "filename": photos[0].name}
    assert item.has_thumbnail and item.vector is not None
    assert client.thumbnail(photos[0].name)[:2] == b"\xff\xd8"
    by_vector = client.search_vector(item.vector, top_k=1).results
    assert by_vector[0].id == photos[0].name
    filtered = client.search_vector(item.vector, top_k=4, filter={"album": "a"}).results
    assert [h.id for h in filtered] == [photos[0].name]

    client.index_vectors([("vec-1", item.vector, {"kind": "vector"})])
    page = client.list_items(limit=2)
    assert page.total == 5 and len(page.items) == 2 and page.next_cursor
    assert [i.id for i in client.iter_items(page_size=2)] == sorted(
        [p.name for p in photos] + ["vec-1"]
    )
    assert [i.id for i in client.iter_items(id_prefix="vec-")] == ["vec-1"]
    with pytest.raises(ApiError) as err:
        client.thumbnail("vec-1")
    assert err.value.status == 404 and "no thumbnail" in err.value.detail

    assert client.delete_item("vec-1") is True
    assert client.delete_item("vec-1") is False
    with pytest.raises(ApiError) as err:
        client.get_item("vec-1")
    assert err.value.status == 404


def test_cli_indexes_a_folder_with_resume(
    server: ServerProcess,
    client: SimSearchClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = _photo_folder(tmp_path, 6)
    url = ["--url", server.url]
    assert cli_main([*url, "index", str(folder), "--batch", "2", "--concurrency", "2"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary == {"total": 6, "indexed": 6, "skipped": 0, "replaced": 0, "failed": 0}
    assert "6/6 done" in captured.err
    ids = {i.id for i in client.iter_items()}
    assert len(ids) == 6 and sum(i.startswith("sub/") for i in ids) == 3

    # Resume: delete two, run again: only those two are sent.
    gone = sorted(ids)[:2]
    assert cli_main([*url, "delete", *gone]) == 0
    assert cli_main([*url, "index", str(folder), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["indexed"] == 2 and summary["skipped"] == 4

    # A broken image fails alone; the rest of its batch is indexed.
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    shutil.copy(sorted(PHOTOS.glob("*.jpg"))[10], folder / "zz.jpg")
    assert cli_main([*url, "index", str(folder), "--batch", "8", "--quiet"]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["indexed"] == 1 and summary["failed"] == 1
    assert "broken.jpg" in captured.err

    assert cli_main([*url, "list", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    listed = [json.loads(line)["id"] for line in lines]
    assert len(listed) == 3 and listed == sorted(listed)

    photo = folder / "zz.jpg"
    assert cli_main([*url, "search", str(photo), "--top-k", "2"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert hits[0]["id"] == photo.name and len(hits) == 2
    assert cli_main([*url, "more-like", photo.name, "--top-k", "2"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert photo.name not in [h["id"] for h in hits]
    assert cli_main([*url, "get", photo.name]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["filename"] == photo.name


def test_cli_expected_mistakes_are_one_line(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["--url", server.url, "get", "no-such-id"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the server answered 404") and "\n" not in err
    assert cli_main(["--url", "http://127.0.0.1:9", "list"]) == 1
    assert "no server answers at" in capsys.readouterr().err
    assert cli_main(["--url", server.url, "index", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert cli_main(["--url", server.url, "delete", "no-such-id"]) == 1


def test_client_imports_without_server_dependencies() -> None:
    code = (
        "import sys, simsearch_client, simsearch_client.cli\n"
        "heavy = {'fastapi', 'numpy', 'PIL', 'onnxruntime', 'faiss', 'app', 'torch'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
