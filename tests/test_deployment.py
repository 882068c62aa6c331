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


def test_compose_milvus_profile_has_one_health_checked_endpoint() -> None:
    """api-milvus-lb: HAProxy (Debian package on the base image) in front of the replicas,
    checking /health/ready; the Milvus server ticks every 50 ms (reads need not wait for it,
    acknowledgements do)."""
    try:
        cfg = _config(profile="milvus")
    except ImportError:
        pytest.skip("PyYAML missing")
    services = cfg["services"]
    lb = services["api-milvus-lb"]
    assert lb["profiles"] == ["milvus"]
    assert lb["build"]["dockerfile"] == "docker/Dockerfile.lb"
    assert any(":8080" in str(p) for p in lb["ports"])
    assert all("127.0.0.1" in str(p) for p in lb["ports"])
    assert "api-milvus" in lb["depends_on"]
    assert services["milvus"]["environment"]["PROXY_TIMETICKINTERVAL"] == "50"

    dockerfile = (REPO / "docker" / "Dockerfile.lb").read_text()
    assert "FROM ${BASE_IMAGE}" in dockerfile
    assert "apt-get install -y --no-install-recommends haproxy" in dockerfile
    assert "USER haproxy" in dockerfile and "/lb-health" in dockerfile
    haproxy_cfg = (REPO / "docker" / "haproxy.cfg").read_text()
    assert "option httpchk GET /health/ready" in haproxy_cfg
    assert re.search(r"server-template \w+ 8 api-milvus:8000", haproxy_cfg)
    assert "monitor-uri /lb-health" in haproxy_cfg
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed: its own config check did not run")
    subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(REPO / "docker" / "haproxy.cfg")], check=True, timeout=60
    )


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


def _make_variables(makefile: str) -> dict[str, str]:
    """NAME := value (or ?=, =) definitions; continuation lines join with one space, as in make."""
    joined = re.sub(r"\s*\\\n\s*", " ", makefile)
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", joined, re.M)
    }


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_image_default_model_is_the_make_model_recipe(name: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    make_vars = _make_variables(makefile)
    recipe = makefile.split("$(MODEL_DIR)/model_meta.json:", 1)[1]
    expected = [
        re.sub(r"\$\((\w+)\)", lambda m: make_vars[m.group(1)], a) for a in _export_args(recipe)
    ]
    model_stage = (REPO / "docker" / name).read_text().split(" AS model", 1)[1].split("\nFROM ")[0]
    build_args = {
        m.group(1): m.group(2) for m in re.finditer(r'^ARG (\w+)="(.*)"$', model_stage, re.M)
    }
    actual = [
        re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], a)
        for a in _export_args(model_stage)
    ]
    assert actual == expected
