"""Access control: API keys with read / write scopes, open probes, loopback-only without
keys, CORS allow-list, and the launcher's bind decision."""

from __future__ import annotations

import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.__main__ import bind_decision
from app.api.auth import KeyRing, required_scope
from app.config import ApiKey, InferenceSettings, Settings
from app.main import create_app
from tests.app.api.conftest import wait_ready

READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[3]


def _settings(tmp_path: Path, model_dir: Path, **kw: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        model_dir=model_dir,
        inference=InferenceSettings(intra_op_threads=1, decode_threads=2),
        **kw,
    )


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = _settings(
        tmp_path_factory.mktemp("auth"),
        tiny_model_dir,
        api_keys=f"{READ_KEY}:read,{WRITE_KEY}:write",
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


def _vector(seed: int = 0) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(32)
    return (v / np.linalg.norm(v)).tolist()


def test_no_key_is_401_with_a_challenge(keyed: TestClient) -> None:
    for method, path in [
        ("POST", "/search/vector"),
        ("POST", "/index/vectors"),
        ("GET", "/items/x"),
        ("DELETE", "/items/x"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/no-such-route"),  # no route enumeration without a key
    ]:
        resp = keyed.request(method, path, json={})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert "API key" in resp.json()["detail"]


def test_invalid_key_is_401(keyed: TestClient) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-valid-key-at-all"},
        {"X-API-Key": READ_KEY[:-1]},
        {"Authorization": f"Basic {READ_KEY}"},  # only the Bearer scheme carries keys
    ):
        resp = keyed.post("/search/vector", json={"vector": _vector()}, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
    resp = keyed.get("/health", headers={"X-API-Key": "wrong-wrong-wrong-wrong"})
    assert resp.json()["detail"] == "invalid API key"
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_read_key_reads_but_cannot_write(keyed: TestClient) -> None:
    for headers in (
        {"Authorization": f"Bearer {READ_KEY}"},
        {"Authorization": f"bearer {READ_KEY}"},
        {"X-API-Key": READ_KEY},
    ):
        assert keyed.post(
            "/search/vector", json={"vector": _vector()}, headers=headers
        ).status_code == 200
        assert keyed.get("/items/nope", headers=headers).status_code == 404
        assert keyed.get("/health", headers=headers).status_code == 200
        assert keyed.get("/metrics", headers=headers).status_code == 200
        item = {"items": [{"id": "r", "vector": _vector()}]}
        resp = keyed.post("/index/vectors", json=item, headers=headers)
        assert resp.status_code == 403 and "'write' scope" in resp.json()["detail"]
        assert keyed.delete("/items/r", headers=headers).status_code == 403
        resp = keyed.post("/index", files=[("files", ("a.png", b"x", "image/png"))],
                          headers=headers)
        assert resp.status_code == 403


def test_write_key_writes_and_reads(keyed: TestClient) -> None:
    headers = {"Authorization": f"Bearer {WRITE_KEY}"}
    item = {"items": [{"id": "w", "vector": _vector(1)}]}
    assert keyed.post("/index/vectors", json=item, headers=headers).status_code == 201
    hit = keyed.post(
        "/search/vector", json={"vector": _vector(1), "top_k": 1}, headers=headers
    ).json()["results"][0]
    assert hit["id"] == "w"
    assert keyed.delete("/items/w", headers=headers).status_code == 200


def test_probes_and_docs_are_open(keyed: TestClient) -> None:
    assert keyed.get("/health/live").json() == {"status": "alive"}
    assert keyed.get("/health/ready").status_code == 200
    schema = keyed.get("/openapi.json").json()
    assert keyed.get("/docs").status_code == 200
    schemes = schema["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    search = schema["paths"]["/search"]["post"]
    assert search["security"] and {"401", "403"} <= set(search["responses"])
    assert "security" not in schema["paths"]["/health/live"]["get"]


def test_auth_comes_before_body_validation(keyed: TestClient) -> None:
    """Without a key a client learns nothing from validation errors: 401, not 422."""
    resp = keyed.post(
        "/index/vectors", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 401
    resp = keyed.post("/search", data={"top_k": "ten"})
    assert resp.status_code == 401


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [ApiKey(key=f"key-number-{i}-0123456789", scope="read") for i in range(5)]
    ring = KeyRing(keys)
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a) + len(b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented in (b"key-number-0-0123456789", b"key-number-4-0123456789", b"x", b"y" * 999):
        calls.clear()
        ring.match(presented)
        # Every key is compared, always on fixed-length digests: the time does not depend on
        # which key matched, nor on the length of what was sent.
        assert calls == [64] * len(keys)
    assert ring.match(b"key-number-3-0123456789") == ("read", "key #4 (read)")
    assert ring.match(b"key-number-3-012345678") is None


def test_scope_of_each_route() -> None:
    assert required_scope("GET", "/health/live") is None
    assert required_scope("GET", "/health/ready") is None
    assert required_scope("GET", "/openapi.json") is None
    assert required_scope("GET", "/health") == "read"
    assert required_scope("GET", "/metrics") == "read"
    assert required_scope("POST", "/search") == "read"
    assert required_scope("POST", "/search/vector") == "read"
    assert required_scope("GET", "/items/a") == "read"
    assert required_scope("POST", "/index") == "write"
    assert required_scope("POST", "/index/vectors") == "write"
    assert required_scope("DELETE", "/items/a") == "write"
    assert required_scope("PUT", "/anything-new") == "write"  # unknown writes need write


def test_settings_parse_and_refuse_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSEARCH_API_KEYS", f" {READ_KEY}:read , {WRITE_KEY}:write ")
    monkeypatch.setenv("SIMSEARCH_CORS_ORIGINS", "https://a.example,https://b.example")
    s = Settings()
    assert [(k.key.get_secret_value(), k.scope) for k in s.api_keys] == [
        (READ_KEY, "read"),
        (WRITE_KEY, "write"),
    ]
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv(
        "SIMSEARCH_API_KEYS", f'[{{"key": "{READ_KEY}", "scope": "read", "name": "ci"}}]'
    )
    assert Settings().api_keys[0].name == "ci"
    for bad in (
        "short:read",
        f"{READ_KEY}",
        f"{READ_KEY}:admin",
        f"{READ_KEY}:read,{READ_KEY}:write",
    ):
        monkeypatch.setenv("SIMSEARCH_API_KEYS", bad)
        with pytest.raises(ValueError) as info:
            Settings()
        assert READ_KEY not in str(info.value), "a settings error must not print the key"


def test_without_keys_only_loopback_clients_are_served(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    app = create_app(_settings(tmp_path, tiny_model_dir))
    with TestClient(app, client=("203.0.113.7", 40000)) as remote:
        wait_ready(remote)
        resp = remote.post("/search/vector", json={"vector": _vector()})
        assert resp.status_code == 403 and "loopback" in resp.json()["detail"]
        assert remote.get("/health/live").status_code == 200
        local = TestClient(app, client=("127.0.0.1", 40001))
        assert local.post("/search/vector", json={"vector": _vector()}).status_code == 200
        local6 = TestClient(app, client=("::1", 40002))
        assert local6.get("/health").status_code == 200


def test_allow_unauthenticated_serves_everyone(tmp_path: Path, tiny_model_dir: Path) -> None:
    app = create_app(_settings(tmp_path, tiny_model_dir, allow_unauthenticated=True))
    with TestClient(app, client=("203.0.113.7", 40000)) as remote:
        wait_ready(remote)
        assert remote.post("/search/vector", json={"vector": _vector()}).status_code == 200


def test_cors_allow_list(tmp_path: Path, tiny_model_dir: Path) -> None:
    allowed = "https://app.example"
    app = create_app(_settings(tmp_path, tiny_model_dir, cors_origins=[allowed]))
    with TestClient(app) as client:
        wait_ready(client)
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        resp = client.options("/search", headers={"Origin": allowed, **preflight})
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == allowed
        resp = client.options("/search", headers={"Origin": "https://evil.example", **preflight})
        assert resp.status_code == 400
        assert "access-control-allow-origin" not in resp.headers
        resp = client.get("/health/live", headers={"Origin": allowed})
        assert resp.headers["access-control-allow-origin"] == allowed
    # Empty allow-list: CORS is off, no header is ever sent.
    with TestClient(create_app(_settings(tmp_path / "b", tiny_model_dir))) as client:
        resp = client.get("/health/live", headers={"Origin": allowed})
        assert "access-control-allow-origin" not in resp.headers


def test_bind_decision() -> None:
    no_keys = Settings()
    keys = Settings(api_keys=f"{READ_KEY}:read")
    opted_out = Settings(allow_unauthenticated=True)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert bind_decision(no_keys, host)[0], host
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.org"):
        allowed, why = bind_decision(no_keys, host)
        assert not allowed and "refusing to bind" in why and "SIMSEARCH_API_KEYS" in why
        assert bind_decision(keys, host)[0]
        allowed, why = bind_decision(opted_out, host)
        assert allowed and "WITHOUT authentication" in why


def test_launcher_refuses_a_public_bind_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMSEARCH_")}
    env.update(SIMSEARCH_HOST="0.0.0.0", SIMSEARCH_PORT="1", SIMSEARCH_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "app"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "refusing to bind 0.0.0.0: no API keys are configured" in out.stderr


def test_images_and_compose_serve_through_the_launcher() -> None:
    import yaml

    for name in ("Dockerfile", "Dockerfile.gpu"):
        final_stage = (REPO / "docker" / name).read_text().split("\nFROM ")[-1]
        assert 'CMD ["python", "-m", "app"]' in final_stage, name
        assert "SIMSEARCH_HOST=0.0.0.0" in final_stage, name
        assert "uvicorn app.main:app" not in final_stage, name
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        # Every published port, API or not (Milvus's stack too), is loopback-only.
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", [])), name
        build = service.get("build") or {}
        if not name.startswith("api") or build.get("dockerfile") == "docker/Dockerfile.lb":
            continue  # the load balancer in front of the Milvus replicas serves no API itself
        env = service["environment"]
        assert env["SIMSEARCH_HOST"] == "0.0.0.0"
        # Keys when given, else the explicit opt-out: never a silent public bind.
        assert "SIMSEARCH_API_KEYS" in env
        assert env["SIMSEARCH_ALLOW_UNAUTHENTICATED"].endswith(":-true}")
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    makefile = (REPO / "Makefile").read_text()
    assert "-m uvicorn" not in makefile and "$(SERVE_PY) -m app" in makefile
