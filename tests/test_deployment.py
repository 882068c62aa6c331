"""docker-compose.yml and the Dockerfiles, validated without a Docker engine."""

import json
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
