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


def _config(*extra: str, profile: str = "gpu") -> dict:
    out = subprocess.run(
        [*_compose_cmd(), "--profile", profile, "config", *extra],
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


def test_compose_milvus_profile_runs_api_replicas_on_the_official_stack() -> None:
    subprocess.run(
        [*_compose_cmd(), "--profile", "milvus", "config", "-q"], cwd=REPO, check=True, timeout=60
    )
    try:
        cfg = _config(profile="milvus")
    except ImportError:
        pytest.skip("PyYAML missing")
    services = cfg["services"]
    for name in ("milvus-etcd", "milvus-minio", "milvus", "api-milvus"):
        assert services[name]["profiles"] == ["milvus"]
    milvus = services["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "milvus-etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "milvus-minio:9000"
    assert "/healthz" in " ".join(milvus["healthcheck"]["test"])
    api = services["api-milvus"]
    env = api["environment"]
    assert env["SIMSEARCH_STORE__BACKEND"] == "milvus"
    assert env["SIMSEARCH_STORE__MILVUS_URI"] == "http://milvus:19530"
    assert api["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    assert int(api["deploy"]["replicas"]) >= 2
    # Replicas need a host port each: a range, never one fixed port.
    assert all("8001-8008" in str(p) for p in api["ports"])


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_run_non_root_with_core_install(name: str) -> None:
    text = (REPO / "docker" / name).read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert "USER simsearch" in final_stage
    assert "torch" not in final_stage, "the serving image must not install torch"
    assert "/health/ready" in final_stage
