"""Property-based requests generated from our own OpenAPI document: never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import ADMIN

# Read-only operations of this service (alias moves and retraining have side effects).
FUZZED = {
    ("POST", "/predict/housing"),
    ("POST", "/predict/iris"),
    ("GET", "/models/info"),
    ("GET", "/models/{name}"),
    ("GET", "/predictions"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
}


def _fuzz(operation, failures: list) -> None:
    """Send generated requests for one operation; record any 5xx."""

    @settings(
        max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy())
    def call(case) -> None:
        response = case.call(headers=ADMIN)
        if response.status_code >= 500:
            failures.append((operation.path, case.body, response.status_code, response.text))
        if response.status_code >= 400 and "json" in response.headers.get("Content-Type", ""):
            assert {"code", "status", "message"} <= set(response.json()), operation.path

    call()


def test_generated_requests_never_get_a_5xx(api_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api_app)
    operations = [op.ok() for op in schema.get_all_operations()]
    selected = [op for op in operations if (op.method.upper(), op.path) in FUZZED]
    assert {(op.method.upper(), op.path) for op in selected} == FUZZED
    failures: list[tuple[str, object, int, str]] = []

    for operation in selected:
        _fuzz(operation, failures)
    assert not failures, failures[:3]


@pytest.mark.parametrize("path", ["/predict/iris", "/predict/housing"])
def test_generated_bodies_cover_errors_and_successes(client, path):
    """Sanity for the generator: valid examples from the docs really succeed."""
    spec = client.get("/openapi.json").get_json()
    examples = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    for example in examples["examples"].values():
        assert client.post(path, json=example["value"]).status_code == 200
