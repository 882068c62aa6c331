"""The CLI as a person meets it, against the real server (`python -m app`, tiny model,
loopback): --help shows defaults, `list | head` ends quietly, `delete` says what it did, the
list footer, progress lines in a log, and a server that dies mid-index."""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simsearch_client import SimSearchClient
from simsearch_client.cli import EXIT_BROKEN_PIPE, build_parser
from simsearch_client.cli import main as cli_main
from tests.reliability.server import REPO, ServerProcess

PHOTOS = REPO.parent / "shared" / "data" / "photos"
pytestmark = [
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available"),
    pytest.mark.timeout(300),
]


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMSEARCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "simsearch_client", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _store_vectors(client: SimSearchClient, n: int) -> list[str]:
    dim = client.health()["model"]["embedding_dim"]
    ids = [f"v{i:03d}" for i in range(n)]
    client.index_vectors([(i, [1.0] + [0.0] * (dim - 1), None) for i in ids])
    return ids


def test_help_shows_defaults_but_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSEARCH_API_KEY", "secret-key-0123456789")
    top = build_parser().format_help()
    assert "(default: 120.0)" in top and "$SIMSEARCH_API_KEY" in top
    assert "secret-key" not in top
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, needles in {
        "index": ["(default: 8)", "(default: 2)", "(default: path)"],
        "search": ["(default: 10)", "(default: none)"],
        "list": ["(default: 50)"],
    }.items():
        text = sub.choices[name].format_help()
        for needle in needles:
            assert needle in text, (name, needle)
        assert "(default: None)" not in text and "(default: False)" not in text


def test_list_footer_and_delete_say_what_happened(
    server: ServerProcess, client: SimSearchClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _store_vectors(client, 3)
    url = ["--url", server.url]
    assert cli_main([*url, "list", "--limit", "2"]) == 0
    err = capsys.readouterr().err
    assert "2 of 3 items; next page: --cursor " in err and "None" not in err
    cursor = err.split("--cursor ", 1)[1].split()[0]
    assert cli_main([*url, "list", "--limit", "2", "--cursor", cursor]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == [ids[2]]
    assert captured.err.strip() == "1 of 3 items; the last page"

    assert cli_main([*url, "delete", ids[0], "never-stored"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [
        {"id": ids[0], "deleted": True},
        {"id": "never-stored", "deleted": False},
    ]
    assert "not found: never-stored" in captured.err and "deleted 1 of 2" in captured.err
    assert cli_main([*url, "delete", ids[1]]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": ids[1], "deleted": True}


def test_list_into_a_closed_pipe_ends_without_a_traceback(
    server: ServerProcess, client: SimSearchClient
) -> None:
    _store_vectors(client, 40)
    proc = _cli("--url", server.url, "list", "--all")
    assert proc.stdout is not None
    proc.stdout.close()  # like `| head` that has read enough: every write now fails (EPIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def _photo_folder(root: Path, copies: int) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for c in range(copies):
        for photo in sorted(PHOTOS.glob("*.jpg")):
            shutil.copy(photo, folder / f"{c}-{photo.name}")
    return folder


def test_server_dying_mid_index_says_a_rerun_resumes(tmp_path: Path, model: Path) -> None:
    (tmp_path / "logs").mkdir()
    server = ServerProcess(tmp_path / "data", model, tmp_path / "logs")
    server.start()
    folder = _photo_folder(tmp_path, copies=4)
    total = len(list(folder.iterdir()))
    args = ["index", str(folder), "--batch", "1", "--concurrency", "1"]
    proc = _cli("--url", server.url, *args, "--progress-interval", "0")
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        # The progress goes to a pipe: one line each, never joined by carriage returns.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                lines.append(proc.stderr.readline())
                if " 3 indexed" in lines[-1]:
                    break
        server.kill()
        _, rest = proc.communicate(timeout=120)
    finally:
        server.kill()
    err = "".join(lines) + rest
    assert proc.returncode == 1, err
    assert "\r" not in err and "images/s" in err and "left" in err
    assert "Traceback" not in err, err
    assert "stopped answering" in err and "run the same command again to resume" in err
    stored = int(err.split("stopped after ", 1)[1].split()[0])
    assert 3 <= stored < total

    # The rerun skips what was stored and sends the rest.
    server.start()
    try:
        rerun = _cli("--url", server.url, *args, "--quiet")
        out, err = rerun.communicate(timeout=240)
        assert rerun.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["skipped"] >= stored and summary["skipped"] + summary["indexed"] == total
    finally:
        server.terminate()
