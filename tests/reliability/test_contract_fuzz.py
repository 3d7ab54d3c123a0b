"""Contract fuzzing: schemathesis requests from our own /openapi.json against the whole app.

Every operation, admin ones included (with the real bearer token), gets schema-valid and
schema-violating requests; every response must be a non-5xx whose status code, content type,
headers and body the document declares. The app serves a private registry copy and its own
Redis, so promote/rollback/retrain act on throw-away state and answer deterministically.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.runtime import get_runtime
from core.specs import MODEL_SPECS
from tests.api.conftest import ADMIN_TOKEN, start_app
from tests.conftest import TrainedRegistry
from tests.workers.conftest import RedisServer

# Per operation and generation mode: about 1,950 requests over the 35 operations.
EXAMPLES = 50
# An unknown request_id makes POST /feedback wait for other workers' prediction logs (bounded
# by the flush interval); fewer examples keep the run short. Probes without a body or query
# (the standard protocols' health and version routes) have little to vary.
EXAMPLES_BY_OPERATION = {
    "POST /feedback": 20,
    "GET /v2": 10,
    "GET /v2/health/live": 10,
    "GET /v2/health/ready": 10,
    **{
        f"GET /mlflow/{{name}}{pin}/{probe}": 10
        for pin in ("", "/versions/{version}")
        for probe in ("ping", "health", "version")
    },
}
PINNED_EXAMPLES = 15  # per real model name (and version), for operations on a {name}
REAL_VERSIONS = ("1", "champion")  # pins that name a served version of the session registry
MIN_REQUESTS = 1900
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
ERROR_KEYS = {"code", "status", "message", "errors"}
# The standard protocols answer errors in their own shapes (Open Inference Protocol V2, MLflow).
PROTOCOL_ERROR_KEYS = {"/v2": {"error"}, "/mlflow/": {"error_code", "message"}}
# Their request bodies are generic over models ({name}): which fields, shapes and values a
# model takes is checked by the server, so a schema-valid body may be answered 400.
PROTOCOL_BODIES = r"^/(v2/models/.*/infer|mlflow/.*/invocations)$"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis: POST /retrain answers 202 once per model, then 409, never 503."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.close()


@pytest.fixture
def fuzz_app(
    registry_copy: TrainedRegistry, tmp_path: Path, redis_server: RedisServer
) -> Iterator[Flask]:
    """A warmed app on a private registry copy, app database and Redis."""
    app = start_app(
        MLFLOW_TRACKING_URI=registry_copy.tracking_uri,
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        REDIS_URL=redis_server.url,
        PREDICTION_LOG_FLUSH_SECONDS=0.02,  # shortest feedback wait for unknown request ids
    )
    yield app
    get_runtime(app).stop()


def strict_document(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document without `default` responses.

    A `default` response makes schemathesis accept any status code, so every status the app
    answers must be listed explicitly to pass status_code_conformance.
    """
    document = copy.deepcopy(app.test_client().get("/openapi.json").get_json())
    for path_item in document["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].pop("default", None)
    return document


def load_schema(app: Flask) -> schemathesis.BaseSchema:
    """The strict document as a schemathesis schema sending requests to app over WSGI."""
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearerAuth": {"bearer": ADMIN_TOKEN}}},
            "operations": [
                {
                    "include-path-regex": PROTOCOL_BODIES,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "404", "409"]
                        }
                    },
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_dict(strict_document(app), config=config)
    schema.app = app
    return schema


def assert_error_shape(response: Any, label: str) -> None:
    """A 4xx body is the one error shape (or its protocol's) and leaks nothing."""
    body = response.json()
    path = label.split(" ", 1)[1]
    protocol = next(
        (keys for prefix, keys in PROTOCOL_ERROR_KEYS.items() if path.startswith(prefix)), None
    )
    if protocol is not None:
        assert isinstance(body, dict) and set(body) == protocol, (label, body)
        assert all(isinstance(body[key], str) and body[key] for key in protocol), (label, body)
    else:
        assert isinstance(body, dict) and set(body) <= ERROR_KEYS, (label, body)
        assert body["code"] == response.status_code and body["status"] and body["message"], body
    text = response.text
    assert "Traceback" not in text and "/tmp/" not in text and ADMIN_TOKEN not in text, text


def negatable(operation: Any) -> bool:
    """True when the operation has a body, query or header (Authorization) to get wrong.

    A free-form string path parameter has no invalid value: for GET /models/{name} alone
    hypothesis could only report Unsatisfiable after seconds of trying.
    """
    return bool(operation.body or operation.query or operation.headers)


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    on_case: Callable[[Any], None],
    examples: int | None = None,
    **fixed: Any,
) -> None:
    """Run generated cases of one operation in one mode through on_case."""

    @settings(
        max_examples=examples or EXAMPLES_BY_OPERATION.get(operation.label, EXAMPLES),
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every CI run: a failure always reproduces
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        on_case(case)

    run()


def test_every_operation_conforms_to_its_document(
    fuzz_app: Flask, trained_registry: TrainedRegistry
) -> None:
    shared_registry = trained_registry.state_dir / "mlflow.db"
    shared_before = hashlib.sha256(shared_registry.read_bytes()).hexdigest()
    schema = load_schema(fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35, [op.label for op in operations]

    sent: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: dict[tuple[str, str], list[str]] = {}  # (operation, failure) -> reports

    def on_case(case: Any) -> None:
        label = case.operation.label
        sent[label] += 1
        try:
            response = case.call_and_validate(checks=CHECKS)
        except FailureGroup as group:
            # Keep fuzzing: one report lists every way every operation breaks its contract.
            for failure in group.exceptions:
                failures.setdefault((label, failure.title), []).append(str(group)[:1500])
            return
        statuses[(label, response.status_code)] += 1
        assert response.headers.get("x-request-id"), label  # lowercase keys, list values
        if 400 <= response.status_code < 500:
            assert_error_shape(response, label)

    started = time.monotonic()
    # Document order reversed: the job, prediction log, feedback and monitoring reads meet an
    # empty database before the predictions at the end fill it.
    for operation in reversed(operations):
        fuzz_operation(operation, GenerationMode.POSITIVE, on_case)
        if negatable(operation):
            fuzz_operation(operation, GenerationMode.NEGATIVE, on_case)
        parameters = {p.name for p in operation.path_parameters}
        if "name" in parameters:
            # Generated names (and versions) are almost never real: also fuzz the real ones.
            pins = [{"version": v} for v in REAL_VERSIONS] if "version" in parameters else [{}]
            for model in MODEL_SPECS:
                for pin in pins:
                    fuzz_operation(
                        operation,
                        GenerationMode.POSITIVE,
                        on_case,
                        examples=PINNED_EXAMPLES,
                        path_parameters={"name": model, **pin},
                    )
    elapsed = time.monotonic() - started

    total = sum(sent.values())
    report = "\n\n".join(
        f"== {label}: {title} ({len(reports)} requests), e.g.\n{reports[0]}"
        for (label, title), reports in failures.items()
    )
    assert not failures, f"{len(failures)} kinds of contract violation:\n{report}"
    assert total >= MIN_REQUESTS, (total, sent)
    assert all(status < 500 for _label, status in statuses), statuses
    # Every operation was reached, and real work happened (not only auth failures).
    assert {op.label for op in operations} <= set(sent)
    assert statuses[("POST /predict/iris", 200)] and statuses[("POST /predict/housing", 200)]
    assert statuses[("GET /predictions", 200)] and statuses[("GET /models/{name}", 200)]
    assert statuses[("POST /retrain", 202)] >= 1 and statuses[("POST /retrain", 409)] >= 1
    for label in (
        "GET /v2/models/{name}",
        "GET /v2/models/{name}/versions/{version}/ready",
        "GET /mlflow/{name}/versions/{version}/ping",
        "GET /mlflow/{name}/version",
    ):
        assert statuses[(label, 200)], label
    print(f"\n[contract fuzz] {total} generated requests in {elapsed:.1f}s")

    # Alias moves and retrains acted on the private copy only: the session registry is intact.
    assert hashlib.sha256(shared_registry.read_bytes()).hexdigest() == shared_before
