"""`python -m workbench.bench --quick`: a smoke run of every section on the tiny graph; checks
the JSON shape (not the figures: benchmarks are scripts, not timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.artifacts.tiny_model import write_tiny_model
from workbench.bench.report.block import write_markdown
from workbench.bench.report.markdown import markdown
from workbench.bench.suite import _command, main

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "index_data" / "samples"


def test_quick_bench_prints_every_figure_next_to_its_raw_limit(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model", max_side=128)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.bench",
            "--quick",
            "--model-dir",
            str(model),
            "--photos",
            str(SAMPLES),
            "--json-out",
            str(out),
            "--no-markdown",
            "--sections",
            "embed,store,rerank,artifacts",
            "--int8-dir",
            str(model),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["quick"] is True

    embed = result["embed"]
    assert embed["raw"]["images_per_s"] > 0 and embed["raw"]["latency"]["p50_ms"] > 0
    assert [r["concurrency"] for r in embed["embedder"]] == [1, 4]
    for row in embed["embedder"]:
        assert row["images_per_s"] > 0 and row["ratio_to_raw"] > 0
    rows = embed["http"]["rows"]
    assert {(r["endpoint"], r["concurrency"]) for r in rows} == {
        ("POST /index", 1),
        ("POST /index", 4),
        ("POST /search", 1),
        ("POST /search", 4),
    }
    for row in rows:
        assert row["images_per_s"] > 0 and row["raw_images_per_s"] > 0
        assert row["ratio_to_raw"] > 0 and row["latency"]["p99_ms"] >= row["latency"]["p50_ms"]
    search = [r for r in rows if r["endpoint"] == "POST /search"]
    assert all("ann_rescore" in r["server_timings"] for r in search)
    assert embed["http"]["rss_idle"]["rss_mib"] > 0

    ((size, store),) = result["store"].items()
    m = store["measure"]
    assert store["index_type"] == "ivfpq" and int(size) == store["n"]
    assert 0.0 <= m["recall_at_10"]["store"] <= 1.0
    assert m["recall_at_10"]["store"] == m["recall_at_10"]["raw"]  # same index, same params
    assert m["batch"]["store_qps"] > 0 and m["batch"]["raw_qps"] > 0
    assert m["single_query"]["store"]["p50_ms"] > 0 and m["single_query"]["raw"]["p50_ms"] > 0
    assert m["memory"]["anon_mib_per_million"] == m["memory"]["anon_mib_per_million"]  # not NaN
    assert store["add"]["vectors_per_s"] > 0 and m["add_ivfpq"]["batch_1000_vectors_per_s"] > 0

    rr = result["rerank"]
    assert rr["one_thread"]["m"] == 400 and rr["one_thread"]["rerank"]["p50_ms"] > 0
    assert rr["one_thread"]["blas_threads_env"] == "1"
    for key in ("one_thread", "default_threads"):  # next to onnxruntime running the model
        c = rr[key]["contention"]
        assert c["onnxruntime_images_per_s_alone"] > 0 and c["rerank_under_load"]["n"] > 0

    art = result["artifacts"]["artifacts"]
    assert set(art) == {"fp32", "int8"}  # the same file twice: identical by construction
    assert art["int8"]["cosine_to_fp32"]["min"] > 0.999
    assert art["int8"]["top1_agreement_with_fp32"] == 1.0

    statuses = {t["target"]: t["status"] for t in result["targets"]}
    assert any(k.startswith("end-to-end indexing") for k in statuses)
    assert all(s in ("hit", "miss", "n/a") for s in statuses.values())

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nprose before\n")
    write_markdown(doc, markdown(result))
    write_markdown(doc, markdown(result))  # the block is replaced, not appended
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nprose before\n")
    assert text.count("bench:begin") == 1 and "| HTTP POST /index | 4 |" in text
    write_markdown(doc, "second block", "other")
    assert text in doc.read_text() and "bench:begin:other" in doc.read_text()


def test_an_unknown_section_is_refused_before_any_work() -> None:
    with pytest.raises(SystemExit, match=r"unknown sections \['nope'\]"):
        main(["--sections", "embed,nope", "--no-markdown"])


def test_the_recorded_command_names_no_folder_of_this_machine(tmp_path: Path) -> None:
    """Paths inside the checkout's parent become relative; others become placeholders."""
    if tmp_path.resolve().is_relative_to(REPO.parent):
        pytest.skip("the temp folder lies beside the checkout here")
    inside = REPO / "index_data" / "model"
    assert _command(["--model-dir", str(inside), "--json-out", str(tmp_path / "b.json")]) == (
        "python -m workbench.bench --model-dir index_data/model --json-out <b.json>"
    )
    assert _command(["--quick"]) == "python -m workbench.bench --quick"
