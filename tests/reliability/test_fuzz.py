"""Schemathesis against the real server's /openapi.json: generated requests (valid and
invalid per the schema, a bounded number per operation) never get a 5xx, invalid ones are
refused with a 4xx, and every response matches the schema (status code, content type,
headers, body). `make fuzz` runs the same with more examples through the CLI.

SIMSEARCH_FUZZ_EXAMPLES sets the number of examples per operation (default 50)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.reliability.server import ServerProcess

logger = logging.getLogger(__name__)
WRITE_KEY = "fuzz-write-key-0123456789"
READ_KEY = "fuzz-read-key-0123456789"
EXAMPLES = int(os.environ.get("SIMSEARCH_FUZZ_EXAMPLES", "50"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# The server runs with exactly these settings (as environment variables).
SERVER_SETTINGS = {
    "api_keys": f"{READ_KEY}:read,{WRITE_KEY}:write",
    "limits__max_upload_bytes": 1024 * 1024,
}


def _spec() -> dict[str, Any]:
    """The schema the server will serve, built without starting it (no lifespan runs), so the
    tests can be generated at collection time; test_served_schema_is_the_fuzzed_one checks
    that the live /openapi.json is the same."""
    settings = Settings(
        api_keys=SERVER_SETTINGS["api_keys"],
        limits={"max_upload_bytes": SERVER_SETTINGS["limits__max_upload_bytes"]},
    )
    return create_app(settings).openapi()


SPEC = _spec()
CALLS: Counter[str] = Counter()
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "logs").mkdir()
    server = ServerProcess(base / "data", tiny_model, base / "logs", **SERVER_SETTINGS)
    server.start()
    yield server
    server.kill()
    operations = {f"{m.upper()} {path}" for path, ops in SPEC["paths"].items() for m in ops}
    logger.info(
        "fuzzed %d requests (%d to the %d documented operations, the rest unsupported methods)",
        sum(CALLS.values()),
        sum(n for op, n in CALLS.items() if op in operations),
        len(operations),
    )
    assert "Traceback" not in server.log(), server.log()[-5000:]


def test_served_schema_is_the_fuzzed_one(fuzz_server: ServerProcess) -> None:
    with fuzz_server.client() as client:
        assert client.get("/openapi.json").json() == SPEC


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.timeout(300)
def test_api_matches_its_schema_and_never_fails(case: Any, fuzz_server: ServerProcess) -> None:
    CALLS[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        base_url=fuzz_server.url, headers={"X-API-Key": WRITE_KEY}, checks=CHECKS, timeout=30
    )
