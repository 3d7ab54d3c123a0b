"""Abuse of the HTTP surface: every hostile request gets a clean 4xx and changes nothing.

"Clean" means the one error shape, a generated X-Request-ID and nothing internal in the body;
"changes nothing" means the prediction log, job records, feedback and every other table of the
app database, and the registry's versions and aliases, are the same before and after.

The in-process app covers the request handling; one real gunicorn (a single worker) covers what
only a real HTTP server sees: chunked bodies, raw header bytes and the log it writes.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import mlflow
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from mlflow import MlflowClient
from sqlalchemy import inspect, text
from swagger_ui_bundle import swagger_ui_path
from werkzeug.test import TestResponse

from app import auth, create_app
from app.request_log import JsonFormatter
from app.runtime import get_runtime
from core import jobs, registry
from core.settings import PROJECT_ROOT
from core.specs import MODEL_SPECS
from tests import procs
from tests.api.conftest import ADMIN, ADMIN_TOKEN, GUNICORN, config_with, example, start_app
from tests.conftest import TrainedRegistry

LIMIT = 256 * 1024  # MAX_CONTENT_LENGTH here: small, so oversized bodies stay cheap to send
ERROR_KEYS = {"code", "status", "message", "errors"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
IRIS = example("iris")
HOUSING = example("housing")

# Every endpoint that reads a JSON body, with the headers it needs and a body it would accept:
# if a check were skipped, that body would act (predict, promote, label, retrain).
JSON_POSTS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "/predict/iris": ({}, IRIS),
    "/predict/housing": ({}, HOUSING),
    "/models/iris/promote": (ADMIN, {"version": "1"}),
    "/feedback": (ADMIN, {"request_id": "0" * 32, "actual": 1.0}),
    "/retrain": (ADMIN, {"model": "iris"}),
}
ADMIN_CALLS = [
    ("POST", "/models/iris/promote"),
    ("POST", "/models/housing/rollback"),
    ("POST", "/feedback"),
    ("POST", "/retrain"),
    ("GET", "/predictions"),
]


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Target:
    """The in-process app under abuse and where its state lives."""

    app: Flask
    tracking_uri: str
    logged_request_id: str  # of a real iris prediction in the log (for feedback cases)


@pytest.fixture(scope="module")
def private_state(trained_registry: TrainedRegistry, tmp_path_factory) -> Path:
    """A private copy of the session registry (nothing here may touch the shared one)."""
    state = tmp_path_factory.mktemp("abuse") / "state"
    state.mkdir()
    shutil.copy2(trained_registry.state_dir / "mlflow.db", state / "mlflow.db")
    return state


def dead_redis_url() -> str:
    """A Redis URL nothing listens on: a retrain that slipped through would answer 503."""
    return f"redis://127.0.0.1:{procs.free_port()}/0"


@pytest.fixture(scope="module")
def target(private_state: Path, trained_registry: TrainedRegistry) -> Iterator[Target]:
    """A warmed app on the private registry, with one logged prediction and the job tables."""
    tracking_uri = f"sqlite:///{private_state / 'mlflow.db'}"
    app = start_app(
        MLFLOW_TRACKING_URI=tracking_uri,
        DATABASE_URL=f"sqlite:///{private_state / 'app.db'}",
        REDIS_URL=dead_redis_url(),
        MAX_CONTENT_LENGTH=LIMIT,
    )
    runtime = get_runtime(app)
    jobs.ensure_schema(runtime.engine)  # every table exists, so counts compare like with like
    logged = app.test_client().post("/predict/iris", json=IRIS)
    assert logged.status_code == 200, logged.get_json()
    runtime.prediction_log.flush()
    yield Target(app, tracking_uri, logged.get_json()["request_id"])
    runtime.stop()
    registry.configure(trained_registry.tracking_uri)


@pytest.fixture
def client(target: Target) -> FlaskClient:
    """A test client of the abused app."""
    return target.app.test_client()


def snapshot(target: Target) -> dict[str, Any]:
    """Row counts of every app table, and every registry version with its aliases."""
    runtime = get_runtime(target.app)
    runtime.prediction_log.flush()  # rows buffered by this worker are counted too
    engine = runtime.engine
    with engine.connect() as conn:
        tables = {
            name: conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            for name in inspect(engine).get_table_names()
        }
    mlflow_client = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.tracking_uri)
    models = {}
    for spec in MODEL_SPECS.values():
        versions = mlflow_client.search_model_versions(f"name = '{spec.registered_name}'")
        aliases = mlflow_client.get_registered_model(spec.registered_name).aliases
        models[spec.registered_name] = (sorted(v.version for v in versions), dict(aliases))
    return {"tables": tables, "registry": models}


@pytest.fixture
def unchanged(target: Target) -> Iterator[None]:
    """Assert that the test changed no table row count and no registry version or alias."""
    before = snapshot(target)
    assert before["tables"].get("prediction_log"), before  # the log is really being counted
    yield
    assert snapshot(target) == before


# -- helpers ----------------------------------------------------------------------------------


def leaks(text_: str) -> list[str]:
    """What an error body must never contain: tracebacks, local paths, the admin token."""
    needles = ["Traceback", 'File "', str(PROJECT_ROOT), "/tmp/", "site-packages", ADMIN_TOKEN]
    return [needle for needle in needles if needle in text_]


def problem(response: TestResponse, expected: int | set[int]) -> str | None:
    """Why response is not a clean error with an expected status (None when it is)."""
    statuses = {expected} if isinstance(expected, int) else expected
    body_text = response.get_data(as_text=True)
    if response.status_code not in statuses:
        return f"status {response.status_code}, expected {sorted(statuses)}: {body_text[:300]}"
    if not GENERATED_ID.fullmatch(response.headers.get("X-Request-ID", "")):
        return f"X-Request-ID {response.headers.get('X-Request-ID')!r}"
    if response.mimetype != "application/json":
        return f"content type {response.mimetype}"
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or not set(body) <= ERROR_KEYS:
        return f"not the error shape: {body_text[:300]}"
    code = response.status_code
    if (body.get("code"), body.get("status")) != (code, HTTPStatus(code).phrase):
        return f"code/status {body.get('code')}/{body.get('status')}"
    if not isinstance(body.get("message"), str) or not body["message"]:
        return "no message"
    found = leaks(body_text)
    return f"leaks {found}: {body_text[:300]}" if found else None


# The standard protocols answer errors in their own shapes (V2, MLflow scoring).
PROTOCOL_ERROR_KEYS = {"/v2": {"error"}, "/mlflow/": {"error_code", "message"}}


def problem_at(path: str, response: TestResponse, expected: int | set[int]) -> str | None:
    """problem(), with the error shape of the protocol that owns path."""
    keys = next((k for prefix, k in PROTOCOL_ERROR_KEYS.items() if path.startswith(prefix)), None)
    if keys is None:
        return problem(response, expected)
    statuses = {expected} if isinstance(expected, int) else expected
    body_text = response.get_data(as_text=True)
    if response.status_code not in statuses:
        return f"status {response.status_code}, expected {sorted(statuses)}: {body_text[:300]}"
    if not GENERATED_ID.fullmatch(response.headers.get("X-Request-ID", "")):
        return f"X-Request-ID {response.headers.get('X-Request-ID')!r}"
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != keys or not all(body.values()):
        return f"not the protocol's error shape: {body_text[:300]}"
    found = leaks(body_text)
    return f"leaks {found}: {body_text[:300]}" if found else None


def errors_at(response: TestResponse, field: str) -> bool:
    """True when the error response names field at the top level of its errors."""
    errors = (response.get_json() or {}).get("errors") or {}
    return field in errors


def post_raw(
    client: FlaskClient,
    path: str,
    body: bytes | str,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST body verbatim (with the endpoint's auth header unless headers are given)."""
    return client.post(
        path,
        data=body,
        content_type=content_type,
        headers=JSON_POSTS[path][0] if headers is None else headers,
        **kwargs,
    )


def assert_all(results: list[tuple[str, str | None]]) -> None:
    """Fail with every case that went wrong, not only the first."""
    bad = [f"{case}: {why}" for case, why in results if why]
    assert not bad, f"{len(bad)} of {len(results)} cases:\n" + "\n".join(bad)


# -- bodies: size, nesting, numbers, text, syntax ----------------------------------------------


def test_oversized_bodies_are_413(client: FlaskClient, unchanged: None) -> None:
    oversized = b'{"pad": "' + b"x" * LIMIT + b'"}'
    results = []
    for path in JSON_POSTS:
        declared = post_raw(client, path, oversized)
        results.append((f"{path} with Content-Length", problem(declared, 413)))
        # A chunked body declares no length: werkzeug stops at the limit without an error, and
        # the app must still answer 413 rather than parse a truncated document.
        streamed = post_raw(
            client,
            path,
            b"",
            input_stream=io.BytesIO(oversized),
            environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
        )
        results.append((f"{path} chunked", problem(streamed, 413)))
        # A declared length over the limit is refused before any byte is read.
        lying = post_raw(client, path, b"{}", environ_overrides={"CONTENT_LENGTH": str(10**12)})
        results.append((f"{path} Content-Length 10**12", problem(lying, 413)))
    assert_all(results)


def test_a_streamed_body_at_the_limit_is_still_read(client: FlaskClient) -> None:
    # The 413 for streamed bodies must not cut off a body that fits.
    body = json.dumps(IRIS).encode()
    padded = body + b" " * (LIMIT - len(body))
    response = post_raw(
        client,
        "/predict/iris",
        b"",
        input_stream=io.BytesIO(padded),
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert response.status_code == 200, response.get_json()


NESTED = {
    "arrays-100k": "[" * 100_000 + "]" * 100_000,
    "objects-40k": '{"a":' * 40_000 + "1" + "}" * 40_000,
    "instances-5k": '{"instances": ' + "[" * 5_000 + "]" * 5_000 + "}",
}


def test_deeply_nested_json_is_400_not_a_recursion_error(
    client: FlaskClient, unchanged: None
) -> None:
    results = []
    for path in JSON_POSTS:
        for name, document in NESTED.items():
            response = post_raw(client, path, document)
            results.append((f"{path} {name}", problem(response, 400)))
        # Nesting the parsers handle is valid JSON of the wrong shape: 422.
        shallow = post_raw(client, path, "[" * 500 + "]" * 500)
        results.append((f"{path} arrays-500", problem(shallow, 422)))
    assert_all(results)


def _iris_with(value: str) -> str:
    """The iris example as JSON text with sepal_length written as value."""
    return json.dumps(IRIS).replace("5.1", value, 1)


# (path, raw body, status, field the error must name or None)
NUMBER_CASES: list[tuple[str, str, int, str | None]] = [
    ("/predict/iris", _iris_with("1e400"), 422, "sepal_length"),
    ("/predict/iris", _iris_with("-1e400"), 422, "sepal_length"),
    ("/predict/iris", _iris_with("1" + "0" * 400), 422, "sepal_length"),
    ("/predict/iris", _iris_with("9" * 5000), 400, None),
    ("/predict/iris", _iris_with("0x10"), 400, None),
    ("/predict/iris", _iris_with("01"), 400, None),
    ("/predict/iris", _iris_with("+1"), 400, None),
    ("/predict/iris", _iris_with(".5"), 400, None),
    ("/predict/iris", _iris_with("1."), 400, None),
    ("/predict/iris", _iris_with("1e"), 400, None),
    ("/predict/iris", _iris_with("--1"), 400, None),
    ("/predict/housing", json.dumps(HOUSING).replace("37.88", "1e308"), 422, "Latitude"),
    ("/predict/housing", json.dumps(HOUSING).replace("322.0", "1" + "0" * 400), 422, "Population"),
    ("/models/iris/promote", '{"version": 1e400}', 422, "version"),
    ("/models/iris/promote", '{"version": 1' + "0" * 400 + "}", 422, "version"),
    ("/models/iris/promote", '{"version": -0}', 422, "version"),
    ("/models/iris/promote", '{"version": 0}', 422, "version"),
    ("/models/iris/promote", '{"version": 1.0}', 422, "version"),
    ("/models/iris/promote", '{"version": "1e3"}', 422, "version"),
    ("/models/iris/promote", '{"version": ' + "9" * 5000 + "}", 400, None),
    ("/feedback", '{"request_id": "abc", "actual": 1e400}', 422, "actual"),
    ("/feedback", '{"request_id": "abc", "actual": 1' + "0" * 400 + "}", 422, "actual"),
    ("/feedback", '{"request_id": "abc", "actual": 1, "row_index": 1e400}', 422, "row_index"),
    ("/feedback", '{"request_id": "abc", "actual": 1, "row_index": 1' + "0" * 40 + "}", 422, None),
    ("/retrain", '{"model": "iris", "force": 1}', 422, "force"),
    ("/retrain", '{"model": "iris", "force": 0}', 422, "force"),
    ("/retrain", '{"model": "iris", "force": -0}', 422, "force"),
    ("/retrain", '{"model": "iris", "force": 1e400}', 422, "force"),
    ("/retrain", '{"model": 1' + "0" * 400 + "}", 422, "model"),
]
NUMBER_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("/jobs?limit=1e400", {}),
    ("/jobs?limit=" + "9" * 5000, {}),
    ("/jobs?limit=-0", {}),
    ("/jobs?limit=NaN", {}),
    ("/predictions?limit=1" + "0" * 400, ADMIN),
    ("/predictions?limit=-0", ADMIN),
]


def test_huge_and_malformed_numbers_are_rejected(client: FlaskClient, unchanged: None) -> None:
    results = []
    for path, body, status, field in NUMBER_CASES:
        response = post_raw(client, path, body)
        why = problem(response, status)
        if why is None and field and not errors_at(response, field):
            why = f"error does not name {field}: {response.get_json()}"
        results.append((f"{path} {body[:60]}", why))
    for url, headers in NUMBER_QUERIES:
        results.append((url[:60], problem(client.get(url, headers=headers), 422)))
    too_many_digits = post_raw(client, "/predict/iris", _iris_with("9" * 5000))
    assert "too many digits" in too_many_digits.get_json()["message"]
    assert_all(results)


def test_negative_zero_is_a_plain_zero(client: FlaskClient) -> None:
    zero = client.post("/predict/housing", json={**HOUSING, "MedInc": 0.0}).get_json()
    negative_zero = post_raw(
        client, "/predict/housing", json.dumps({**HOUSING, "MedInc": "@"}).replace('"@"', "-0")
    )
    assert negative_zero.status_code == 200, negative_zero.get_json()
    assert negative_zero.get_json()["prediction"] == zero["prediction"]


INVALID_BYTES = {
    "invalid-utf8": b'{"k": "\xff\xfe"}',
    "utf8-encoded-surrogate": b'{"k": "\xed\xa0\x80"}',
    "overlong-utf8": b'{"k": "\xc0\xaf"}',
    "raw-nul-after-document": b'{"k": 1}\x00',
    "raw-control-char-in-string": b'{"k": "a\x01b"}',
    "utf16": '{"model": "iris"}'.encode("utf-16"),
    "latin1": '{"model": "irisé"}'.encode("latin-1"),
}


def _unicode_cases(logged_request_id: str) -> list[tuple[str, str, str]]:
    """(path, raw JSON with escapes, field the 422 must name)."""
    iris = json.dumps(IRIS)
    return [
        ("/predict/iris", iris.replace("5.1", '"\\ud800"'), "sepal_length"),
        ("/predict/iris", iris.replace('"sepal_length"', '"\\u202esepal_length"'), "sepal_length"),
        ("/predict/iris", iris.replace('"sepal_length"', '"sepal_length\\u0000"'), "sepal_length"),
        ("/retrain", '{"model": "iris\\u0000"}', "model"),
        ("/retrain", '{"model": "\\u202eiris"}', "model"),
        ("/retrain", '{"model": "\\udfff"}', "model"),
        ("/retrain", '{"model": "iris", "reason": "\\ud800"}', "reason"),
        ("/retrain", '{"model": "iris", "reason": "a\\u0000b"}', "reason"),
        ("/models/iris/promote", '{"version": "\\ud800"}', "version"),
        ("/models/iris/promote", '{"version": "1\\u0000"}', "version"),
        ("/models/iris/promote", '{"version": "\\u00b2"}', "version"),  # "²".isdigit()
        ("/models/iris/promote", '{"version": "\\u0661"}', "version"),  # Arabic-Indic 1
        ("/feedback", '{"request_id": "\\ud800", "actual": 1}', "request_id"),
        ("/feedback", '{"request_id": "a\\u0000b", "actual": 1}', "request_id"),
        ("/feedback", f'{{"request_id": "{logged_request_id}", "actual": "\\ud800"}}', "actual"),
    ]


def test_unicode_junk_is_rejected(target: Target, client: FlaskClient, unchanged: None) -> None:
    results = []
    for path in JSON_POSTS:
        for name, body in INVALID_BYTES.items():
            results.append((f"{path} {name}", problem(post_raw(client, path, body), 400)))
    for path, body, field in _unicode_cases(target.logged_request_id):
        response = post_raw(client, path, body)
        why = problem(response, 422)
        if why is None and not errors_at(response, field):
            why = f"error does not name {field}: {response.get_json()}"
        results.append((f"{path} {body[:70]!r}", why))
    assert_all(results)


DUPLICATE_KEYS: list[tuple[str, str, set[str]]] = [
    # Both parsers (orjson, and the standard one NaN falls back to) keep the last value.
    ("/predict/iris", json.dumps(IRIS)[:-1] + ', "sepal_length": "x"}', {"sepal_length"}),
    (
        "/predict/iris",
        json.dumps(IRIS).replace("0.2", "NaN")[:-1] + ', "sepal_length": "x"}',
        {"sepal_length", "petal_width"},
    ),
    ("/retrain", '{"model": "iris", "model": "nonsense"}', {"model"}),
    ("/models/iris/promote", '{"version": "1", "version": "one"}', {"version"}),
    ("/feedback", '{"request_id": "abc", "actual": 1, "actual": null}', {"actual"}),
]


def test_duplicate_keys_last_one_wins_everywhere(client: FlaskClient, unchanged: None) -> None:
    results = []
    for path, body, fields in DUPLICATE_KEYS:
        response = post_raw(client, path, body)
        why = problem(response, 422)
        named = set((response.get_json() or {}).get("errors") or {})
        if why is None and not fields <= named:
            why = f"errors name {named}, expected {fields}"
        results.append((f"{path} {body[:60]}", why))
    assert_all(results)


LYING_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "text/json",
    "application/jsonx",
    None,
]


def test_json_under_another_content_type_is_415(client: FlaskClient, unchanged: None) -> None:
    results = []
    for path, (_headers, valid) in JSON_POSTS.items():
        for content_type in LYING_CONTENT_TYPES:
            response = post_raw(client, path, json.dumps(valid), content_type=content_type)
            results.append((f"{path} as {content_type}", problem(response, 415)))
    assert_all(results)


NOT_A_RECORD = [("", 400), ("  \n\t", 400), ("null", 422), ("[]", 422), ("[{}]", 422)]
NOT_A_RECORD += [('"text"', 422), ("42", 422), ("true", 422), ("{} {}", 400)]


def test_empty_null_and_non_object_bodies(client: FlaskClient, unchanged: None) -> None:
    results = []
    for path in JSON_POSTS:
        for body, status in NOT_A_RECORD:
            results.append((f"{path} {body!r}", problem(post_raw(client, path, body), status)))
    assert_all(results)


# -- routing: methods and paths ---------------------------------------------------------------

SAMPLE_ARGS = {"name": "iris", "version": "1", "job_id": "0" * 32, "filename": "swagger-ui.css"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"]


def test_wrong_methods_on_every_route_are_405_with_allow(
    target: Target, client: FlaskClient, unchanged: None
) -> None:
    adapter = target.app.url_map.bind("localhost")
    results = []
    routes = 0
    for rule in target.app.url_map.iter_rules():
        path = rule.build(SAMPLE_ARGS, append_unknown=False)[1]
        allowed = set(adapter.allowed_methods(path))
        routes += 1
        for method in METHODS:
            if method in allowed:
                continue
            response = client.open(path, method=method, headers=ADMIN)
            why = problem_at(path, response, 405)
            advertised = {m.strip() for m in response.headers.get("Allow", "").split(",")}
            if why is None and advertised != allowed:
                why = f"Allow {advertised}, expected {allowed}"
            results.append((f"{method} {path}", why))
    assert routes >= 18 and len(results) >= 80, (routes, len(results))
    assert_all(results)


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> tuple[Path, str]:
    """A file outside every served folder with content no response may ever contain."""
    content = f"SECRET-{secrets.token_hex(16)}"
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(content)
    return path, content


def _traversals(secret: Path) -> list[str]:
    """Paths that try to climb from served folders to secret (and to /etc/passwd)."""
    rel = os.path.relpath(secret, swagger_ui_path)
    climbs = [
        rel,
        rel.replace(".", "%2e").replace("/", "%2f"),
        rel.replace("../", "..%2f"),
        rel.replace("../", "%252e%252e%252f"),
        rel.replace("/", "\\"),
        "%2f" + str(secret).lstrip("/"),
        "/" + str(secret),
        "..%c0%af" * 12 + str(secret).lstrip("/"),
    ]
    paths = [f"/docs/assets/{climb}" for climb in climbs]
    for prefix in ("/models/", "/jobs/", "/predict/", "/docs/"):
        paths += [
            prefix + "../../etc/passwd",
            prefix + "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            prefix + "..%2F..%2Fetc%2Fpasswd",
            prefix + "....//....//etc/passwd",
            prefix + rel,
        ]
    paths += [
        "/models/" + "a" * 10_000,
        "/jobs/" + "f" * 10_000,
        "/models/%E2%80%AEiris",
        "/models/%ED%A0%80",
        "/models/%FF",
        "/models/iris%00",
        "/jobs/%00",
        "/models/iris%2f..%2f..%2finfo%2fx",
    ]
    return paths


def test_path_traversal_is_404_and_reads_no_file(
    client: FlaskClient, secret_file: tuple[Path, str], unchanged: None
) -> None:
    secret, content = secret_file
    # Sanity: unrefused, the climbs below would reach the file.
    assert (Path(swagger_ui_path) / os.path.relpath(secret, swagger_ui_path)).resolve() == secret
    results = []
    for path in _traversals(secret):
        for method in ("GET", "POST"):
            # Doubled slashes get werkzeug's 308 to the merged path: follow it to the end.
            response = client.open(path, method=method, headers=ADMIN, follow_redirects=True)
            # POST on a path that matches a GET-only route is a 405: routed, never served.
            why = problem(response, 404 if method == "GET" else {404, 405})
            moved = [urlsplit(r.headers["Location"]).path for r in response.history]
            prefix = "/" + path.split("/")[1] + "/"
            if why is None and not all(url.startswith(prefix) for url in moved):
                why = f"redirected out of {prefix}: {moved}"
            body = response.get_data(as_text=True)
            if content in body or "root:" in body:
                why = f"served a file: {body[:100]}"
            results.append((f"{method} {path[:80]}", why))
    # Sanity: the assets folder is really served, so a 404 above is a refusal, not a dead route.
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert_all(results)


# -- headers: request ids and tokens ----------------------------------------------------------

HOSTILE_REQUEST_IDS = [
    "abc\r\nSet-Cookie: pwned=1",
    "abc\nX-Injected: 1",
    "abc\rX-Injected: 1",
    "x" * 129,
    "y" * 10_000,
    "é-request".encode().decode("latin-1"),  # UTF-8 bytes as a WSGI server passes them on
    "\u202eabc",
    "abc\x00def",
    "abc\tdef",
    "id with spaces",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    '"quoted"',
    "abc;def",
    "",
]


def _formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as the JSON line the app writes to stderr."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def test_hostile_request_ids_are_replaced_never_echoed(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, unchanged: None
) -> None:
    caplog.set_level(logging.DEBUG)
    results = []
    issued: list[str] = []
    for value in HOSTILE_REQUEST_IDS:
        for path in ("/health/live", "/models/wine"):  # a success and an error
            response = client.get(path, environ_overrides={"HTTP_X_REQUEST_ID": value})
            answered = response.headers.get("X-Request-ID", "")
            issued.append(answered)
            ok = GENERATED_ID.fullmatch(answered) and answered != value
            why = None if ok else f"answered X-Request-ID {answered[:80]!r}"
            if why is None and {"Set-Cookie", "X-Injected"} & set(response.headers.keys()):
                why = f"injected headers: {list(response.headers.keys())}"
            results.append((f"{path} {value[:40]!r}", why))
    logs = _formatted(caplog)
    logged_ids = [getattr(r, "fields", {}).get("request_id") for r in caplog.records]
    assert set(issued) <= set(logged_ids), "the request log must carry the generated ids"
    for value in HOSTILE_REQUEST_IDS:
        if len(value) > 3:
            results.append(
                (f"log {value[:40]!r}", "echoed into the log" if value in logs else None)
            )
    assert "X-Injected" not in logs and "pwned" not in logs
    # The sanity case: a well-formed id is echoed, so the replacements above are deliberate.
    sane = client.get("/health/live", headers={"X-Request-ID": "trace-0123.abc:7"})
    assert sane.headers["X-Request-ID"] == "trace-0123.abc:7"
    assert_all(results)


def _wrong_tokens() -> list[str]:
    """Near misses of the real token, and tokens no one should ever send."""
    token = ADMIN_TOKEN
    near = [token[:i] + chr(ord(c) ^ 1) + token[i + 1 :] for i, c in enumerate(token)]
    near += [token[:i] for i in range(1, len(token))]
    near += [token + "x", token + token, token.upper(), token.title(), "x" + token[1:]]
    near += [token.replace("-", " "), token.replace("e", "\u0435").encode().decode("latin-1")]
    near += [token + "\x00", "\x00" + token, token.replace("t", "%74")]
    near += ["x" * 10_000, "null", "undefined", "*", "' OR '1'='1"]
    near += [secrets.token_urlsafe(len(token))[: len(token)] for _ in range(130)]
    near += [secrets.token_hex(n) for n in range(1, 60)]
    return near


def _headers_for(tokens: list[str]) -> list[tuple[str, bool]]:
    """(Authorization header, whether it is a Bearer credential the app must compare)."""
    headers = [(f"Bearer {t}", bool(t.strip())) for t in tokens]
    headers += [(f"bearer {t}", True) for t in tokens[:10]]
    basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    headers += [(f"Basic {basic}", False), (f"Token {ADMIN_TOKEN}", False), (ADMIN_TOKEN, False)]
    headers += [
        ("Bearer", False),
        ("Bearer ", False),
        ("", False),
        (f"Bearer\t{ADMIN_TOKEN}", False),
    ]
    return headers


def test_wrong_tokens_are_401_and_compared_in_constant_time(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, unchanged: None
) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real_compare(given, expected)

    real_compare = auth.hmac.compare_digest
    monkeypatch.setattr(auth, "hmac", SimpleNamespace(compare_digest=spy))
    headers = _headers_for(_wrong_tokens())
    results = []
    for i, (value, _is_bearer) in enumerate(headers):
        method, path = ADMIN_CALLS[i % len(ADMIN_CALLS)]
        body = JSON_POSTS.get(path, (None, None))[1]
        response = client.open(
            path,
            method=method,
            json=body,
            environ_overrides={"HTTP_AUTHORIZATION": value},
        )
        why = problem(response, 401)
        message = (response.get_json() or {}).get("message")
        if why is None and message not in ("Missing bearer token.", "Invalid bearer token."):
            why = f"message {message!r}"
        if why is None and not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            why = "no Bearer challenge"
        token = value.partition(" ")[2].strip()
        if why is None and len(token) > 3 and token in response.get_data(as_text=True):
            why = "token echoed"
        results.append((f"{method} {path} {value[:40]!r}", why))
    assert len(results) >= 250
    assert_all(results)
    # Every bearer credential went through hmac.compare_digest against the configured token;
    # nothing else decided (a plain == would leak the matching prefix length through timing).
    bearer = [v.partition(" ")[2].strip() for v, is_bearer in headers if is_bearer]
    assert [given for given, _ in compared] == [t.encode() for t in bearer]
    assert {expected for _, expected in compared} == {ADMIN_TOKEN.encode()}


def test_tokens_never_reach_logs_or_responses(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, unchanged: None
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{secrets.token_hex(8)}"
    responses = []
    for method, path in ADMIN_CALLS:
        body = JSON_POSTS.get(path, (None, None))[1]
        for token in (wrong, ADMIN_TOKEN):
            if token == ADMIN_TOKEN and path.endswith("/rollback"):
                continue  # the right token would act: rollback takes no body to get wrong
            # The right token with a body that fails validation: authenticated and logged,
            # yet nothing changes.
            sent = body if token == wrong or method == "GET" else {"bogus": True}
            response = client.open(
                path, method=method, json=sent, headers={"Authorization": f"Bearer {token}"}
            )
            responses.append(response)
    statuses = {r.status_code for r in responses}
    assert 200 in statuses and 401 in statuses and 422 in statuses, statuses
    logs = _formatted(caplog)
    assert '"route":"/predictions"' in logs.replace(" ", "")  # the request log was captured
    for secret in (ADMIN_TOKEN, wrong):
        assert secret not in logs
        for response in responses:
            assert secret not in response.get_data(as_text=True)
            assert secret not in str(response.headers)


def test_docs_and_status_pages_expose_no_secrets(trained_registry: TrainedRegistry) -> None:
    token = f"adm-{secrets.token_hex(16)}"
    passwords = [f"pw{secrets.token_hex(8)}" for _ in range(3)]
    config = config_with(
        API_ADMIN_TOKEN=token,
        DATABASE_URL=f"postgresql+psycopg2://svc:{passwords[0]}@db.internal:5432/app",
        MLFLOW_TRACKING_URI=f"postgresql://ml:{passwords[1]}@mlflow-db.internal/ml",
        REDIS_URL=f"redis://:{passwords[2]}@127.0.0.1:{procs.free_port()}/0",
    )
    previous_uri = mlflow.get_tracking_uri()
    try:
        # No service is started: the docs and probes must not need the databases.
        client = create_app(config).test_client()
        pages = {
            url: client.get(url)
            for url in ("/openapi.json", "/docs", "/health", "/health/ready", "/models/info")
        }
    finally:
        registry.configure(previous_uri)  # create_app pointed MLflow at the fake URI
    assert pages["/openapi.json"].status_code == 200 and pages["/docs"].status_code == 200
    needles = [token, ADMIN_TOKEN, *passwords, "db.internal", "mlflow-db", "postgresql"]
    needles += [str(PROJECT_ROOT), str(trained_registry.state_dir), "site-packages", ".venv"]
    for url, response in pages.items():
        page = response.get_data(as_text=True)
        assert not [n for n in needles if n in page], (url, [n for n in needles if n in page])
    swagger = pages["/docs"].get_data(as_text=True)
    assert "/docs/assets/" in swagger and "cdn" not in swagger.lower()  # served locally


# -- a real server: chunked bodies, raw header bytes, its log ---------------------------------


@dataclass
class Server:
    """One gunicorn worker on the private registry."""

    base_url: str
    port: int
    log_path: Path


@pytest.fixture(scope="module")
def server(
    private_state: Path, trained_registry: TrainedRegistry, tmp_path_factory
) -> Iterator[Server]:
    """`gunicorn -c deploy/gunicorn.conf.py` with one worker (enough to see the HTTP layer)."""
    root = tmp_path_factory.mktemp("abuse-gunicorn")
    port = procs.free_port()
    uri = f"sqlite:///{private_state / 'mlflow.db'}"
    env = {
        **trained_registry.env,
        "STATE_DIR": str(root),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "DATABASE_URL": f"sqlite:///{root / 'app.db'}",
        "REDIS_URL": dead_redis_url(),
        "API_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "API_ADMIN_TOKEN": ADMIN_TOKEN,
        "MAX_CONTENT_LENGTH": str(LIMIT),
        "PROMETHEUS_MULTIPROC_DIR": str(root / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    log_path = root / "gunicorn.log"
    proc = procs.start(
        [GUNICORN, "-c", "deploy/gunicorn.conf.py", "app:create_app()"], env, log_path
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(f"{base_url}/health/ready", procs.START_SECONDS, proc)
        yield Server(base_url, port, log_path)
    finally:
        procs.stop(proc, timeout=15)


def raw_request(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send request bytes as they are; return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _head_and_body(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lowercase names) and body of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_server_refuses_oversized_chunked_body(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(LIMIT // 8192 + 2):
            yield b"x" * 8192
        yield b'"}'

    response = requests.post(
        f"{server.base_url}/predict/iris",
        data=chunks(),  # a generator: requests sends Transfer-Encoding: chunked
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["code"] == 413


def test_server_answers_a_huge_declared_length_at_once(server: Server) -> None:
    started = time.monotonic()
    answer = raw_request(
        server.port,
        b"POST /predict/iris HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\n\r\n{}",
        timeout=10,
    )
    status, _headers, body = _head_and_body(answer)
    assert status == 413 and json.loads(body)["code"] == 413
    assert time.monotonic() - started < 5  # refused from the header, not after a read timeout


HOSTILE_HEADER_BYTES = [
    b"abc\xff\xfe",
    b"abc\x00def",
    b"abc\rSet-Cookie: pwned=1",
    b"abc\r\n X-Injected: folded",
    b"\xe2\x80\xaeabc",
    b"z" * 6000,
]


def test_server_never_echoes_hostile_request_id_bytes(server: Server) -> None:
    for value in HOSTILE_HEADER_BYTES:
        answer = raw_request(
            server.port,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + value + b"\r\n\r\n",
        )
        status, headers, _body = _head_and_body(answer)
        # gunicorn may refuse the request line itself (400); if the app answers, it must have
        # replaced the id.
        assert status in (200, 400), (value, answer[:300])
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert b"set-cookie" not in head and b"injected" not in head, (value, head)
        if status == 200:
            assert GENERATED_ID.fullmatch(headers["x-request-id"]), (value, headers)


def test_server_log_holds_no_token(server: Server) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    for token in (wrong, ADMIN_TOKEN):
        for method, path in ADMIN_CALLS:
            if token == ADMIN_TOKEN and path.endswith("/rollback"):
                continue  # the right token would act: rollback takes no body to get wrong
            response = requests.request(
                method,
                server.base_url + path,
                json={"bogus": True} if method == "POST" else None,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            # 200 includes GET /predictions on a server that has logged nothing yet.
            assert response.status_code in (200, 401, 422), (path, response.text)

    def logged_last_request() -> str:
        log = server.log_path.read_text(errors="replace")
        return log if log.count('"route":"/predictions"') >= 2 else ""

    # The app writes its request log line after answering: wait for the last one.
    log = procs.wait_until(logged_last_request, 10, "the request log lines", interval=0.05)
    assert wrong not in log and ADMIN_TOKEN not in log
