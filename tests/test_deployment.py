"""docker-compose.yml and the Dockerfiles, validated without a Docker engine."""

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("docker-compose is not installed (.ci/run installs it from Debian)")


def _config(*extra: str) -> dict:
    out = subprocess.run(
        [*_compose_cmd(), "--profile", "gpu", "config", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import yaml  # docker-compose depends on PyYAML; only the system one is needed

    return yaml.safe_load(out.stdout)


def test_compose_file_is_valid() -> None:
    subprocess.run([*_compose_cmd(), "config", "-q"], cwd=REPO, check=True, timeout=60)


def test_compose_services_volume_healthcheck_gpu_profile() -> None:
    try:
        cfg = _config()
    except ImportError:
        pytest.skip("PyYAML missing")
    api, gpu = cfg["services"]["api"], cfg["services"]["api-gpu"]
    assert "simsearch-data" in cfg["volumes"]
    for svc in (api, gpu):
        assert any("/data" in json.dumps(v) for v in svc["volumes"])
        assert "/health/ready" in " ".join(svc["healthcheck"]["test"])
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_run_non_root_with_core_install(name: str) -> None:
    text = (REPO / "docker" / name).read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert "USER simsearch" in final_stage
    assert "torch" not in final_stage, "the serving image must not install torch"
    assert "/health/ready" in final_stage


def _export_args(text: str) -> list[str]:
    """The arguments of the `scripts/export.py` command in a Makefile or Dockerfile, minus --out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    command = re.search(r"scripts/export\.py( --[^\n&]*)", joined)
    assert command is not None, "no scripts/export.py command"
    args = shlex.split(command.group(1))
    if "--out" in args:
        at = args.index("--out")
        del args[at : at + 2]
    return args


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_image_default_model_is_the_make_model_recipe(name: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(MODEL_DIR)/model_meta.json:", 1)[1]
    samples = re.search(r"^SAMPLES \?= (\S+)", makefile, re.M)
    assert samples is not None
    expected = [a.replace("$(SAMPLES)", samples.group(1)) for a in _export_args(recipe)]
    model_stage = (REPO / "docker" / name).read_text().split(" AS model", 1)[1]
    assert _export_args(model_stage) == expected
