"""workbench/gpu/proof.sh: its dry run on the CPU runs every step's real command and writes every
figure into the one JSON; its arguments, wheel chunks and report writer on their own."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.gpu import proof_report as report
from workbench.gpu import wheels as gpu_wheels

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "workbench" / "gpu" / "proof.sh"
STEPS = [
    "env",
    "install",
    "export_fp32",
    "export_fp16",
    "health",
    "gpu_tests",
    "embed_fp32",
    "artifacts",
    "iobinding",
    "train_data",
    "train",
    "embed_fp16",
]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One dry run for the module (about 65 CPU-seconds): its JSON and its OUT folder."""
    out = tmp_path_factory.mktemp("gpu_proof_out")
    # The budget ends the script before pytest's own timeout (600 s) on a very busy machine.
    proc = _run("--dry-run", "--budget", "540", str(out), timeout=590)
    path = out / "gpu_proof.json"
    assert path.exists(), proc.stderr[-3000:]
    result = json.loads(path.read_text())
    not_ok = {
        s["name"]: (s["status"], s.get("figures_error"), s["log_tail"][-1500:])
        for s in result["steps"]
        if s["status"] != "ok" or "figures_error" in s
    }
    assert proc.returncode == 0 and not not_ok, (proc.returncode, not_ok)
    return result, out


def test_dry_run_runs_every_step_and_reports_its_figures(dry_run: tuple[dict, Path]) -> None:
    result, out = dry_run
    assert result["mode"] == "dry-run" and result["ok"] is True
    assert [s["name"] for s in result["steps"]] == STEPS
    for step in result["steps"]:
        assert step["status"] == "ok" and step["rc"] == 0 and step["figures"], step["name"]
        assert 0 < step["seconds"] <= step["limit_s"] and step["command"], step["name"]
        assert (out / "gpu_proof_logs" / f"{step['name']}.log").is_file()
    fig = {s["name"]: s["figures"] for s in result["steps"]}

    assert result["gpu"] is None and fig["env"]["torch"]["version"]
    assert fig["install"]["installed_dists"] == [f"{gpu_wheels.PROBE_DIST}==1.0"]
    assert fig["install"]["import_failures"] == [] and fig["install"]["versions"]["fastapi"]
    for precision in ("fp32", "fp16"):
        export = fig[f"export_{precision}"]
        assert export["precision"] == precision and export["parity_min_cosine"] >= 0.999
    assert fig["health"]["status"] == "ok" and fig["health"]["gpu_active"] is False
    assert fig["health"]["providers"] == ["CPUExecutionProvider"]

    tests = fig["gpu_tests"]
    assert tests["collected"] >= 4 and tests["failed"] == tests["error"] == 0
    assert tests["skipped"] == tests["collected"]  # no CUDA here: every gpu test skips

    for name, precision in (("embed_fp32", "fp32"), ("embed_fp16", "fp16")):
        multi = fig[name]["multi_scale"]
        assert multi["model"]["precision"] == precision and multi["model"]["max_side"] == 512
        assert multi["raw"]["images_per_s"] > 0 and multi["index_best"]["images_per_s"] > 0
        assert {r["endpoint"] for r in multi["http"]} == {"POST /index", "POST /search"}
    one = fig["embed_fp32"]["one_scale"]
    assert one["model"]["scales"] == [1.0] and one["search_c1_p50_ms"] > 0

    fp16 = fig["artifacts"]["artifacts"]["fp16"]
    assert fp16["precision"] == "fp16" and fp16["cosine_to_fp32_min"] >= 0.999
    assert fp16["speedup_vs_fp32"] > 0
    iob = fig["iobinding"]["artifacts"]
    assert [a["precision"] for a in iob] == ["fp32", "fp16"]
    for a in iob:
        assert [b["batch"] for b in a["batches"]] == [1, 2]
        for b in a["batches"]:
            assert b["max_abs_diff"] < 1e-5 and b["io_binding_on_images_per_s"] > 0

    train = fig["train"]
    assert fig["train_data"]["classes"] == train["classes"]
    if (REPO.parent / "shared" / "data" / "photos").is_dir():
        assert train["classes"] == 22  # the 30 shared photos, 8 held out
    else:  # the proof falls back to index_data/samples
        assert train["classes"] >= 2
    assert train["steps"] == 2 and len(train["loss_curve"]) == 2
    assert all(math.isfinite(loss) for _, loss in train["loss_curve"])
    assert train["images_per_s_median"] > 0 and "on cpu" in train["setup"]

    targets = {t["target"]: t for t in result["targets"]}
    assert len(targets) == 10
    assert all(t["value"] is not None for t in targets.values())
    assert {t["status"] for t in targets.values() if t["bound"] != "reported"} == {"dry run"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "OUT is missing"),
        (("--frobnicate", "x"), "unknown option --frobnicate"),
        (("a", "b"), "one OUT only"),
        (("--budget", "soon", "x"), "--budget takes whole seconds"),
        (("--chunks", "tests", "--wheels", "tests", "x"), "--chunks or --wheels, not both"),
        (("--chunks", "no-such-folder", "x"), "no folder"),
        (("--work",), "--work needs a value"),
    ],
)
def test_bad_arguments_exit_2_and_say_why(args: tuple[str, ...], message: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 2 and message in proc.stderr


def test_help_lists_every_option() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for option in ("--chunks", "--wheels", "--dry-run", "--budget", "--photos", "--site"):
        assert option in proc.stdout


def test_steps_without_time_are_skipped_and_the_json_is_still_written(tmp_path: Path) -> None:
    out = tmp_path / "proof.json"
    proc = _run("--dry-run", "--budget", "0", str(out))
    assert proc.returncode == 1
    result = json.loads(out.read_text())
    assert [s["name"] for s in result["steps"]] == STEPS and result["ok"] is False
    assert {s["status"] for s in result["steps"]} == {"skipped"}
    assert all("figures" not in s for s in result["steps"])
    assert (tmp_path / "proof_logs" / "train.log").read_text().strip() == "no time left: skipped"


# ---------------------------------------------------------------------------- wheels
def test_chunks_join_in_numeric_order_and_install(tmp_path: Path) -> None:
    chunks = tmp_path / "chunks"
    parts = gpu_wheels.probe_chunks(chunks, n_parts=11)  # part.10 sorts after part.9
    assert [p.name for p in parts][-2:] == ["part.9", "part.10"]
    wheels = gpu_wheels.join_chunks(chunks, tmp_path / "unpacked")
    (wheel,) = wheels.glob("*.whl")
    assert gpu_wheels.wheel_name_version(wheel) == (gpu_wheels.PROBE_DIST, "1.0")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    assert (site / "gpu_proof_probe" / "__init__.py").read_text().count('"1.0"') == 1


def test_missing_or_broken_chunks_are_refused(tmp_path: Path) -> None:
    chunks = tmp_path / "chunks"
    gpu_wheels.probe_chunks(chunks, n_parts=3)
    (chunks / "part.1").unlink()
    with pytest.raises(SystemExit, match=r"parts \[1\] are missing"):
        gpu_wheels.join_chunks(chunks, tmp_path / "a")
    gpu_wheels.probe_chunks(chunks, n_parts=3)
    first = bytearray((chunks / "part.0").read_bytes())
    first[600:700] = b"x" * 100  # inside the wheel (the tar header is the first 512 bytes)
    (chunks / "part.0").write_bytes(bytes(first))
    with pytest.raises(SystemExit, match="is damaged"):
        gpu_wheels.join_chunks(chunks, tmp_path / "b")
    (chunks / "part.0").write_bytes(b"not a tar")
    with pytest.raises(SystemExit, match="do not form a tar"):
        gpu_wheels.join_chunks(chunks, tmp_path / "b")
    with pytest.raises(SystemExit, match=r"no part\.N files"):
        gpu_wheels.join_chunks(tmp_path / "b", tmp_path / "c")


def test_plan_keeps_what_is_there_and_replaces_the_cpu_onnxruntime(tmp_path: Path) -> None:
    import numpy
    import onnxruntime

    have = numpy.__version__
    major = int(have.split(".")[0])
    names = [
        f"numpy-{major - 1}.0.0-cp312-cp312-manylinux_2_28_x86_64.whl",  # older: keep
        f"numpy-{major + 1}.0.0-cp312-cp312-manylinux_2_28_x86_64.whl",  # newer: install
        "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        "not_installed_here-0.1-py3-none-any.whl",
    ]
    chosen, decisions = gpu_wheels.plan([tmp_path / n for n in names])
    why = {(d["dist"], d["version"]): d for d in decisions}
    assert not why[("numpy", f"{major - 1}.0.0")]["install"]
    assert why[("numpy", f"{major - 1}.0.0")]["why"] == f"present: {have}"
    assert why[("numpy", f"{major + 1}.0.0")]["why"] == f"older here: {have}"
    assert why[("onnxruntime-gpu", "1.31.1")]["why"] == (
        f"replaces onnxruntime {onnxruntime.__version__}"
    )
    assert why[("not-installed-here", "0.1")]["why"] == "absent"
    assert sorted(p.name for p in chosen) == sorted(names[1:])


def test_versions_and_wheel_names() -> None:
    assert gpu_wheels.version_key("2026.10.19.post1") == (2026, 10, 19)
    assert gpu_wheels.version_key("1.31.1rc2") > gpu_wheels.version_key("1.31.0")
    assert gpu_wheels.normalize("Pydantic_Core") == "pydantic-core"
    with pytest.raises(ValueError, match="not a wheel"):
        gpu_wheels.wheel_name_version(Path("pydantic.tar.gz"))
    specs = gpu_wheels.specs()
    assert specs[0] == gpu_wheels.ONNXRUNTIME_GPU and all("==" in s for s in specs)
    assert {s.split("==")[0] for s in specs} == {d for d, _ in gpu_wheels.PACKED}


# ---------------------------------------------------------------------------- report
def _work_with(tmp_path: Path, lines: list[str]) -> Path:
    work = tmp_path / "work"
    for sub in ("results", "logs", "steps"):
        (work / sub).mkdir(parents=True)
    (work / "steps.tsv").write_text("".join(line + "\n" for line in lines))
    return work


def test_report_keeps_a_failed_step_and_notes_missing_figures(tmp_path: Path) -> None:
    work = _work_with(tmp_path, ["health\tok\t0\t3.0\t60", "train\ttimeout\t124\t120.0\t120"])
    (work / "results" / "health.json").write_text(
        json.dumps(
            {
                "ready_s": 2.0,
                "gpu_active": True,
                "health": {
                    "status": "ok",
                    "model": {
                        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                        "device": "cuda",
                        "precision": "fp32",
                    },
                },
            }
        )
    )
    (work / "logs" / "train.log").write_text("\n".join(f"line {i}" for i in range(100)))
    out = tmp_path / "out.json"
    report.main(["write", "--work", str(work), "--out", str(out), "--mode", "gpu"])
    result = json.loads(out.read_text())
    health, train = result["steps"]
    assert health["figures"]["device"] == "cuda" and "figures_error" not in health
    assert train["status"] == "timeout" and train["rc"] == 124
    assert "FileNotFoundError" in train["figures_error"]
    assert train["log_tail"].splitlines() == [f"line {i}" for i in range(70, 100)]
    assert result["ok"] is False
    cuda = result["targets"][0]
    assert cuda["status"] == "hit" and "CUDAExecutionProvider" in cuda["value"]


def test_targets_hit_and_miss_in_gpu_mode() -> None:
    def steps(ips: float, ratio: float, p50: float) -> dict:
        best = {
            "images_per_s": ips,
            "ratio_to_raw": ratio,
            "concurrency": 16,
            "raw_images_per_s": ips / ratio,
        }
        return {
            "health": {"figures": {"providers": ["CPUExecutionProvider"], "gpu_active": False}},
            "embed_fp32": {
                "figures": {
                    "multi_scale": {"index_best": best},
                    "one_scale": {"search_c1_p50_ms": p50},
                }
            },
        }

    rows = {r["target"]: r["status"] for r in report.targets(steps(750.0, 0.95, 9.0), "gpu")}
    statuses = list(rows.values())
    # No CUDA per /health; no gpu_tests figures: n/a, never a hit.
    assert statuses[:5] == ["miss", "n/a", "hit", "hit", "hit"]
    assert statuses[5:] == ["n/a"] * 5
    rows = {r["target"]: r["status"] for r in report.targets(steps(650.0, 0.8, 20.0), "gpu")}
    assert list(rows.values())[2:5] == ["miss", "miss", "miss"]
    with_tests = steps(750.0, 0.95, 9.0)
    counts = {"collected": 4, "passed": 4, "skipped": 0, "failed": 0, "error": 0}
    with_tests["gpu_tests"] = {"figures": counts}
    assert report.targets(with_tests, "gpu")[1]["status"] == "hit"
    with_tests["gpu_tests"] = {"figures": counts | {"passed": 3, "skipped": 1}}
    assert report.targets(with_tests, "gpu")[1]["status"] == "miss"


# ---------------------------------------------------------------------------- GPU-only flags
def _no_gpu_here() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA execution provider")


def test_gpu_mode_checks_refuse_a_machine_without_gpu(tmp_path: Path) -> None:
    """The three flags only the GPU run passes (a dry run cannot): each fails here, clearly."""
    _no_gpu_here()
    from workbench.artifacts.tiny_model import write_tiny_model

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=REPO, text=True, capture_output=True, timeout=300
        )

    env = run(
        "-m",
        "workbench.gpu.proof_report",
        "env",
        "--json-out",
        str(tmp_path / "env.json"),
        "--require-gpu",
    )
    assert env.returncode == 1 and "no GPU" in env.stderr
    assert json.loads((tmp_path / "env.json").read_text())["gpu"] is None
    install = run(
        "-m", "workbench.gpu.wheels", "install", "--site", str(tmp_path / "site"), "--require-cuda"
    )
    assert install.returncode == 1 and "no CUDAExecutionProvider" in install.stderr
    health = run(
        "-m",
        "workbench.gpu.health_probe",
        "--model-dir",
        str(write_tiny_model(tmp_path / "model")),
        "--require-gpu",
    )
    assert health.returncode != 0 and "require_gpu" in health.stderr
