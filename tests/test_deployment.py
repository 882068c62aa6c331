"""docker-compose.yml and the Dockerfiles, validated without a Docker engine."""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
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
    assert env["SIMSEARCH_STORE__MILVUS__URI"] == "http://milvus:19530"
    assert api["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    assert int(api["deploy"]["replicas"]) >= 2
    # Replicas need a host port each: a range, never one fixed port.
    assert all("8001-8008" in str(p) for p in api["ports"])


def test_compose_sets_only_current_setting_names() -> None:
    """Every grouped SIMSEARCH_ variable an API service gets is a field of the settings model
    (no deprecated flat names such as SIMSEARCH_STORE__MILVUS_URI, no typos)."""
    from app.config import setting_env_names

    try:
        cfg = _config(profile="milvus")
    except ImportError:
        pytest.skip("PyYAML missing")
    known = setting_env_names()
    assert "SIMSEARCH_STORE__MILVUS__URI" in known
    grouped = {
        key
        for name in ("api", "api-milvus")
        for key in cfg["services"][name]["environment"]
        if key.startswith("SIMSEARCH_") and "__" in key
    }
    assert "SIMSEARCH_STORE__MILVUS__COLLECTION" in grouped
    assert grouped <= known, grouped - known


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


def test_installs_are_sized_to_their_job() -> None:
    """Serving carries neither torch nor playwright nor a Milvus server: pymilvus is the
    `milvus` extra (the image and the dev extra install it), `make run` serves from a venv with
    the core install only and exports the default model with torch elsewhere."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for heavy in ("torch", "playwright", "milvus", "pytest"):
        assert heavy not in core, heavy
    extras = project["optional-dependencies"]
    assert [d for d in extras["milvus"] if d.startswith("pymilvus")]
    assert "dolg-simsearch[milvus]" in extras["dev"]
    service_stage = (REPO / "docker" / "Dockerfile").read_text().split(" AS service", 1)[1]
    service_stage = service_stage.split("\nFROM ")[0]
    assert "p['dependencies'] + p['optional-dependencies']['milvus']" in service_stage
    assert "train" not in service_stage and "dev" not in service_stage

    makefile = (REPO / "Makefile").read_text()
    make_vars = _make_variables(makefile)
    serve_env = makefile.split("\n$(SERVE_STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    # The service and its client CLI (httpx): no other extra.
    assert "$(SERVE_PY) -m pip install --quiet -e '.[client]'\n" in serve_env + "\n"
    assert serve_env.replace("[ ", "").count("[") == 1, "the serving venv installs one extra"
    for target in ("run", "serve", "index", "samples"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "$(SERVE_PY)" in recipe and "$(PY) " not in recipe, target
    assert make_vars["SERVE_VENV"] != make_vars["VENV"]
    model = makefile.split("$(MODEL_DIR)/model_meta.json:", 1)[1].split("\n\n", 1)[0]
    assert "'.[train]'" in model and "$(EXPORT_PY) -m workbench.export" in model
    assert "rm -rf $(TOOLS_VENV)" in model


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_run_non_root_with_core_install(name: str) -> None:
    text = (REPO / "docker" / name).read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert "USER simsearch" in final_stage
    assert "torch" not in final_stage, "the serving image must not install torch"
    assert "/health/ready" in final_stage


def _export_args(text: str) -> list[str]:
    """The arguments of the `python -m workbench.export` command in a Makefile or Dockerfile,
    minus --out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    command = re.search(r"-m workbench\.export( --[^\n&]*)", joined)
    assert command is not None, "no `-m workbench.export` command"
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
        # [ \t], not \s: an empty value must not swallow the next line.
        for m in re.finditer(r"^([A-Z_]+)[ \t]*[:?]?=[ \t]*(.*)$", joined, re.M)
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


# ---- the deployment guide as a first user follows it (README "Deployment")


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_makefile_variables_are_all_defined_and_the_base_image_has_one_name() -> None:
    makefile = (REPO / "Makefile").read_text()
    defined = _make_variables(makefile)
    # A variable used but never defined expands to nothing (the old test-docker's BASE_IMAGE).
    used = set(re.findall(r"\$\(([A-Z_]+)\)", makefile))
    assert used <= set(defined), sorted(used - set(defined))
    assert "DOCKER_BASE_IMAGE" not in makefile
    assert defined["BASE_IMAGE"] == "simsearch-base:py311-bookworm"
    for target in ("docker-base", "docker-build", "test-docker"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "$(BASE_IMAGE)" in recipe, target


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu", "Dockerfile.milvus"])
def test_throwaway_build_stages_are_labelled_for_pruning(name: str) -> None:
    stages = (REPO / "docker" / name).read_text().split("\nFROM ")[1:]
    assert len(stages) >= 2
    for stage in stages[:-1]:
        assert "\nLABEL simsearch.build-stage=" in stage, stage.splitlines()[0]
    assert "simsearch.build-stage" not in stages[-1], "the final image must not be pruned"
    prune = "docker image prune --force --filter label=simsearch.build-stage"
    docker_build = (REPO / "Makefile").read_text().split("\ndocker-build:", 1)[1]
    assert prune in docker_build.split("\n\n", 1)[0]
    assert '"label=simsearch.build-stage"' in (REPO / "tests/docker/conftest.py").read_text()


def test_deployment_guide_lists_prerequisites_and_the_volume_names_docker_shows() -> None:
    import yaml

    guide = _section((REPO / "README.md").read_text(), "Deployment")
    for needle in (
        "docker.io",
        "docker-compose",
        "debootstrap",
        "docker info",
        "systemctl start docker",
        "docker/build-inputs",
        "required",
    ):
        assert needle in guide, needle
    volumes = yaml.safe_load((REPO / "docker-compose.yml").read_text())["volumes"]
    for volume in volumes:
        assert f"`<project>_{volume}`" in guide, volume


def test_base_image_script_checks_the_engine_before_debootstrap(tmp_path: Path) -> None:
    """No engine answers (a socket nobody listens on): the script stops at once, before the
    ~50 s of debootstrap, and says what to do."""
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
        "TMPDIR": str(tmp_path),
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "docker" / "base_image.sh"), "simsearch-test-base:never"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < 15, elapsed
    if shutil.which("docker"):
        assert "Docker engine does not answer" in proc.stderr and "start it" in proc.stderr
    else:
        assert "missing: docker" in proc.stderr
    assert not list(tmp_path.glob("simsearch-rootfs.*")), "debootstrap started"


def _fresh_clone(dest: Path) -> Path:
    """The tracked files only, as `git clone` gives them: no .venv, no build inputs."""
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_build_inputs_script_runs_on_a_fresh_clone(tmp_path: Path) -> None:
    """Without .venv it uses python3's pip; a torch it cannot find is one clear message. (pip
    looks only in an empty folder here: no network.)"""
    if not shutil.which("python3"):
        pytest.skip("no python3 on PATH")
    clone = _fresh_clone(tmp_path / "clone")
    (tmp_path / "wheels").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CA_BUNDLE")}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "wheels"), TORCH_VERSION="2.13.0")
    proc = subprocess.run(
        [str(clone / "docker" / "build_inputs.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert not (clone / ".venv").exists()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ".venv" not in proc.stderr, proc.stderr
    assert "could not download torch==2.13.0" in proc.stderr
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in proc.stderr


@pytest.mark.slow
def test_build_inputs_script_fetches_torch_on_a_fresh_clone(tmp_path: Path) -> None:
    """The real download through this machine's pip configuration (~200 MB)."""
    clone = _fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CA_BUNDLE")}
    proc = subprocess.run(
        [str(clone / "docker" / "build_inputs.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list((clone / "docker" / "build-inputs").glob("torch-2.13.0*.whl"))
    assert len(wheels) == 1 and wheels[0].stat().st_size > 50_000_000


def test_local_milvus_restarts_without_waiting_out_30_s_sessions() -> None:
    """`docker stop` kills the wheel's Milvus (PID 1 ignores SIGTERM); with the default 30 s
    session TTL the next start waited ~55 s (README "Deployment"), with 10 s ~25 s."""
    flag = '"--extra-config", "common.session.ttl=10"'
    assert flag in (REPO / "docker" / "Dockerfile.milvus").read_text()
    assert flag in (REPO / "docker" / "compose.local-milvus.yml").read_text()
