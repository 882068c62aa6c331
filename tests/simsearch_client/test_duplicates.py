"""`SimSearchClient.duplicates` and `simsearch duplicates` against the real server
(`python -m app`, tiny model, loopback): the same groups as GET /duplicates, paged; the index
report per upload; human-readable and JSON output."""

from __future__ import annotations

import json
from dataclasses import asdict

import httpx
import pytest

from simsearch_client import SimSearchClient
from simsearch_client.cli import main as cli_main
from tests.reliability.server import REPO, ServerProcess

PHOTOS = REPO.parent / "shared" / "data" / "photos"
pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")


def _raw_groups(url: str) -> list[dict]:
    body = httpx.get(url + "/duplicates", params={"limit": 500}).json()
    assert body["next_cursor"] is None
    return list(body["groups"])


def test_client_and_cli_report_the_servers_groups(
    server: ServerProcess, client: SimSearchClient, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))[:5]
    client.index_images(photos, ids=[p.name for p in photos])
    # Byte-identical copies under other ids: a match under any verdict.
    copies = [("copy-a.jpg", photos[0].read_bytes()), ("copy-b.jpg", photos[3].read_bytes())]
    report = client.index_images(copies, ids=["copies/a", "copies/b"])
    assert photos[0].name in [d.id for d in report.duplicates["copies/a"]]
    assert photos[3].name in [d.id for d in report.duplicates["copies/b"]]
    assert all(d.score > 0.99 for d in report.duplicates["copies/a"][:1])
    # Opting out: stored all the same, no report for that upload (the folder loader does this).
    unchecked = client.index_images(
        [("copy-c.jpg", photos[1].read_bytes())], ids=["copies/c"], check_duplicates=False
    )
    assert unchecked.ids == ["copies/c"] and "copies/c" not in unchecked.duplicates

    raw = _raw_groups(server.url)
    groups = list(client.iter_duplicates(page_size=1))
    assert [asdict(g) for g in groups] == raw
    assert any({photos[0].name, "copies/a"} <= set(g.ids) for g in groups)
    assert any({photos[3].name, "copies/b"} <= set(g.ids) for g in groups)
    page = client.duplicates(limit=1)
    assert page.groups == groups[:1] and page.total_groups == len(groups)
    assert any({photos[1].name, "copies/c"} <= set(g.ids) for g in groups)
    assert page.items_checked == 8
    assert (page.next_cursor is None) == (len(groups) == 1)

    assert cli_main(["--url", server.url, "duplicates"]) == 0
    out = capsys.readouterr().out
    for n, g in enumerate(groups, 1):
        assert f"group {n}: {g.size} copies" in out
        assert f"  keep  {g.representative}\n" in out
        for other in g.ids[1:]:
            assert f"        {other}\n" in out
    assert out.strip().endswith(f"{len(groups)} groups, {sum(g.size for g in groups)} items")

    assert cli_main(["--url", server.url, "duplicates", "--json", "--limit", "1"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [json.loads(line) for line in lines] == raw[:1]
    assert "1 groups" in captured.err


def test_cli_with_no_duplicates_and_a_bad_limit(
    server: ServerProcess, client: SimSearchClient, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = sorted(PHOTOS.glob("*.jpg"))[0]
    client.index_images([photo])
    assert client.duplicates().groups == []
    assert cli_main(["--url", server.url, "duplicates"]) == 0
    assert capsys.readouterr().out.strip() == "no duplicates stored"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--url", server.url, "duplicates", "--limit", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
