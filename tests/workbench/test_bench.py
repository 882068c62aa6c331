"""`python -m workbench.bench --quick`: a smoke run of every section on the tiny graph; checks
the JSON shape (not the figures: benchmarks are scripts, not timed tests)."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.onnx_models import write_tiny_model
from workbench.bench.suite import DEFAULT_EXPORT, markdown, milvus_argv, parse_args, write_markdown

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "index_data" / "samples"


def test_quick_bench_prints_every_figure_next_to_its_raw_limit(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model", max_side=128)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.bench", "--quick", "--model-dir", str(model),
         "--photos", str(SAMPLES), "--json-out", str(out), "--no-markdown",
         "--sections", "embed,store,rerank,artifacts", "--int8-dir", str(model)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
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
        ("POST /index", 1), ("POST /index", 4), ("POST /search", 1), ("POST /search", 4)}
    for row in rows:
        assert row["images_per_s"] > 0 and row["raw_images_per_s"] > 0
        assert row["ratio_to_raw"] > 0 and row["latency"]["p99_ms"] >= row["latency"]["p50_ms"]
    search = [r for r in rows if r["endpoint"] == "POST /search"]
    assert all("ann_rescore" in r["server_timings"] for r in search)
    assert embed["http"]["rss_idle"]["rss_mib"] > 0

    (size, store), = result["store"].items()
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


def test_milvus_section_runs_bench_milvus_with_its_size_and_server() -> None:
    """`--sections milvus` runs workbench/bench/milvus.py (its own defaults otherwise); no real
    run here: at 100k it takes minutes."""
    assert milvus_argv(parse_args(["--sections", "milvus"])) == [
        "-m", "workbench.bench.milvus", "--n", "100000"]
    assert milvus_argv(parse_args(["--milvus-n", "20000", "--milvus-uri", "http://m:19530"])) == [
        "-m", "workbench.bench.milvus", "--n", "20000", "--milvus-uri", "http://m:19530"]
    assert milvus_argv(
        parse_args(["--milvus-n", "200000", "--milvus-dim", "1280",
                    "--milvus-index-types", "IVF_SQ8,HNSW"])
    ) == ["-m", "workbench.bench.milvus", "--n", "200000", "--dim", "1280",
          "--index-types", "IVF_SQ8,HNSW"]
    quick = milvus_argv(parse_args(["--quick"]))
    assert quick[:4] == ["-m", "workbench.bench.milvus", "--n", "3000"]
    assert importlib.util.find_spec(quick[1]) is not None


def _make_model_export_args() -> list[str]:
    """The export flags of the Makefile's model rule (`$(PY) -m workbench.export ... --out ...`)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if "-m workbench.export" in line and not line.lstrip().startswith("#"):
            words = shlex.split(line.split("-m workbench.export", 1)[1])
            out = words.index("--out")
            return words[:out] + words[out + 2:]
    raise AssertionError("no `-m workbench.export` rule in the Makefile")


@pytest.mark.torch
def test_without_model_dir_the_bench_exports_what_make_model_exports() -> None:
    """No --model-dir: the bench measures the service's default (export.py --default, the
    Lite0 + GeM recipe), with the same flags as `make model`, not a copy of the recipe."""
    from workbench import export

    assert _make_model_export_args() == DEFAULT_EXPORT
    args = export.parse_args([*DEFAULT_EXPORT, "--out", "unused"])
    for key, value in export.DEFAULT_MODEL.recipe.items():
        assert getattr(args, key) == value, key
    assert args.name == export.DEFAULT_MODEL.name and args.backbone == "efficientnet_lite0"
    assert not args.random_init and not args.calibrate_bn


def test_photos_section_inputs_are_deterministic_and_sized() -> None:
    """bench_photos makes its phone / camera JPEGs at run time from the shared photos: same
    bytes for the same seed, the asked size, and the section runs through bench.py."""
    import io

    from PIL import Image

    from workbench.bench.photos import upscaled_jpeg
    from workbench.bench.suite import run_photos

    src = io.BytesIO()
    Image.new("RGB", (300, 200), (40, 90, 160)).save(src, "JPEG")
    a = upscaled_jpeg(src.getvalue(), (640, 480), seed=3)
    assert a == upscaled_jpeg(src.getvalue(), (640, 480), seed=3)
    assert a != upscaled_jpeg(src.getvalue(), (640, 480), seed=4)
    assert Image.open(io.BytesIO(a)).size == (640, 480)
    assert callable(run_photos) and "photos" in parse_args(["--sections", "photos"]).sections


def test_duplicate_check_cost_counts_the_checks_post_index_makes(tmp_path: Path) -> None:
    """Re-uploaded photos: every upload's exact copy is reported (cosine 1 decides alone);
    the counts are per image and the CPU figure is measured, not assumed."""
    from workbench.bench.photos import duplicate_check_cost
    from workbench.servers.service import settings_for

    photos = REPO.parent / "shared" / "data" / "photos"
    if not photos.is_dir():
        pytest.skip("../shared/data/photos is not available")
    names = ["plasma_kite.jpg", "mate_garden.jpg", "skimage_coffee.jpg"]
    blobs = [(photos / n).read_bytes() for n in names]
    settings = settings_for(tmp_path / "data", write_tiny_model(tmp_path / "model"), {})
    repeated = duplicate_check_cost(blobs, settings, tmp_path, "repeated")
    assert repeated["uploads"] == "repeated" and repeated["images"] == 3
    assert repeated["copies_reported_per_image"] >= 1.0
    assert repeated["cpu_ms_per_image"] > 0 and repeated["sift_passes_per_image"] >= 0
    distinct = duplicate_check_cost(blobs, settings, tmp_path, "distinct")
    assert distinct["images"] == 3 and distinct["copies_reported_per_image"] <= 2 / 3
    assert not (tmp_path / "dupcheck-repeated").exists()  # its store is removed after
