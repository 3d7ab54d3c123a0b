"""Abuse of the standard protocols (Open Inference Protocol V2, MLflow scoring) and of pins.

Bad tensors, wrong shapes and datatypes, huge shapes, lying binary headers, CSV bombs and
hostile pins: each gets a clean 4xx in its protocol's error shape (no traceback, no path, a
request id) and changes nothing: not the prediction log or any app table, not the registry,
and not the pinned-version cache (a refused request loads no version).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlflow import MlflowClient
from sqlalchemy import inspect, text
from werkzeug.test import TestResponse

from app.runtime import get_runtime
from core import registry
from core.settings import PROJECT_ROOT
from core.specs import HOUSING, IRIS, MODEL_SPECS
from tests.api.conftest import example, start_app
from tests.api.versions_support import PinnedRegistry
from tests.conftest import TrainedRegistry

LIMIT = 256 * 1024  # MAX_CONTENT_LENGTH here
MAX_ROWS = 100  # MAX_BATCH_ROWS here: batch bounds are cheap to cross
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
BINARY = "Inference-Header-Content-Length"
ROW = [f.example for f in HOUSING.features]
IRIS_ROW = example("iris")


@pytest.fixture(scope="module")
def app(
    pinned_registry: PinnedRegistry, trained_registry: TrainedRegistry, tmp_path_factory
) -> Iterator[Flask]:
    """A warmed app on a private copy of the registry with versions to pin, one logged row."""
    state = tmp_path_factory.mktemp("protocol-abuse")
    shutil.copy2(pinned_registry.state_dir / "mlflow.db", state / "mlflow.db")
    app = start_app(
        MLFLOW_TRACKING_URI=f"sqlite:///{state / 'mlflow.db'}",
        DATABASE_URL=f"sqlite:///{state / 'app.db'}",
        MAX_CONTENT_LENGTH=LIMIT,
        MAX_BATCH_ROWS=MAX_ROWS,
    )
    logged = app.test_client().post("/predict/iris", json=IRIS_ROW)
    assert logged.status_code == 200, logged.get_json()
    yield app
    get_runtime(app).stop()
    registry.configure(trained_registry.tracking_uri)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def snapshot(app: Flask) -> dict[str, Any]:
    """Row counts of every app table, the registry's versions and aliases, the pinned cache."""
    runtime = get_runtime(app)
    runtime.prediction_log.flush()
    with runtime.engine.connect() as conn:
        tables = {
            name: conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            for name in inspect(runtime.engine).get_table_names()
        }
    uri = app.config["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    models = {
        spec.registered_name: (
            sorted(
                v.version for v in client.search_model_versions(f"name = '{spec.registered_name}'")
            ),
            dict(client.get_registered_model(spec.registered_name).aliases),
        )
        for spec in MODEL_SPECS.values()
    }
    return {"tables": tables, "registry": models, "pinned": runtime.versions.status()["versions"]}


@pytest.fixture
def unchanged(app: Flask) -> Iterator[None]:
    before = snapshot(app)
    assert before["tables"].get("prediction_log"), before  # the log is really being counted
    yield
    assert snapshot(app) == before


def problem(response: TestResponse, expected: set[int], keys: set[str]) -> str | None:
    """Why response is not a clean protocol error with an expected status (None when it is)."""
    body_text = response.get_data(as_text=True)
    if response.status_code not in expected:
        return f"status {response.status_code}, expected {sorted(expected)}: {body_text[:300]}"
    if not GENERATED_ID.fullmatch(response.headers.get("X-Request-ID", "")):
        return f"X-Request-ID {response.headers.get('X-Request-ID')!r}"
    body = response.get_json(silent=True)
    if response.mimetype != "application/json" or not isinstance(body, dict) or set(body) != keys:
        return f"not the protocol's error shape: {body_text[:300]}"
    if "code" in keys and body["code"] != response.status_code:
        return f"not the protocol's error shape: {body_text[:300]}"
    if not all(isinstance(body[key], str) and body[key] for key in keys - {"code"}):
        return f"empty fields: {body}"
    needles = ["Traceback", 'File "', str(PROJECT_ROOT), "/tmp/", "site-packages"]
    found = [needle for needle in needles if needle in body_text]
    return f"leaks {found}: {body_text[:300]}" if found else None


def v2(**fields: Any) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [1, 8], "datatype": "FP64", "data": ROW}
    return {"inputs": [{**tensor, **fields}]}


def nested(depth: int) -> str:
    return (
        '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": '
        + "[" * depth
        + "1"
        + "]" * depth
        + "}]}"
    )


# (label, body, headers): every one must be a 400 (413 for the oversized ones).
V2_CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("huge first dimension", v2(shape=[10**18, 8]), {}),
    ("dimension past uint64", v2(shape=[2**70, 8]), {}),
    ("ten thousand dimensions", v2(shape=[1] * 10_000), {}),
    ("zero-size tensor", v2(shape=[0, 8], data=[]), {}),
    ("more rows than MAX_BATCH_ROWS", v2(shape=[MAX_ROWS + 1, 8], data=ROW * (MAX_ROWS + 1)), {}),
    ("shape and data disagree", v2(shape=[2, 4]), {}),
    ("ragged nested data", v2(data=[ROW[:3], ROW[3:]]), {}),
    ("strings for numbers", v2(data=[str(v) for v in ROW]), {}),
    ("objects for numbers", v2(data=[{"v": v} for v in ROW]), {}),
    ("booleans for numbers", v2(data=[True] * 8), {}),
    ("nulls", v2(data=[None] * 8), {}),
    ("BYTES datatype", v2(datatype="BYTES"), {}),
    ("BOOL datatype", v2(datatype="BOOL"), {}),
    ("lower-case datatype", v2(datatype="fp64"), {}),
    ("datatype not a string", v2(datatype=64), {}),
    ("name not a string", v2(name=["x"]), {}),
    ("shape not a list", v2(shape="1,8"), {}),
    ("negative dimension", v2(shape=[-1, 8]), {}),
    ("float dimension", v2(shape=[1.0, 8]), {}),
    ("boolean dimension", v2(shape=[True, 8]), {}),
    ("three-dimensional input", v2(shape=[1, 1, 8]), {}),
    ("duplicate inputs", {"inputs": v2()["inputs"] * 2}, {}),
    (
        "a thousand inputs",
        {
            "inputs": [
                {"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [1.0]}
                for i in range(1000)
            ]
        },
        {},
    ),
    (
        "per-field shapes differ",
        {
            "inputs": [
                {
                    "name": f.name,
                    "shape": [1 + (i == 3)],
                    "datatype": "FP64",
                    "data": [1.0] * (1 + (i == 3)),
                }
                for i, f in enumerate(HOUSING.features)
            ]
        },
        {},
    ),
    ("unknown output", {**v2(), "outputs": [{"name": "everything"}]}, {}),
    ("outputs not objects", {**v2(), "outputs": ["prediction"]}, {}),
    ("null parameters", {**v2(), "parameters": None}, {}),
    ("id not a string", {**v2(), "id": {"x": 1}}, {}),
    ("deeply nested data", nested(100_000), {}),
    ("binary header past the body", json.dumps(v2()), {BINARY: "100000"}),
    ("binary header zero", json.dumps(v2()), {BINARY: "0"}),
    ("binary header negative", json.dumps(v2()), {BINARY: "-5"}),
    ("binary header not a number", json.dumps(v2()), {BINARY: "12abc"}),
]


def binary_body(claimed: Any, raw: bytes, **extra: Any) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 8],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": claimed},
                    **extra,
                }
            ]
        }
    ).encode()
    return header + raw, {BINARY: str(len(header))}


RAW = np.asarray(ROW, dtype="<f8").tobytes()
BINARY_CASES = {
    "size smaller than the shape": binary_body(32, RAW[:32]),
    "size larger than the body": binary_body(64, RAW[:40]),
    "trailing bytes nobody claims": binary_body(64, RAW + b"\0" * 8),
    "size not an integer": binary_body(64.0, RAW),
    "size negative": binary_body(-64, RAW),
    "binary and JSON data at once": binary_body(64, RAW, data=ROW),
    "NaN in binary data": binary_body(64, np.asarray([np.nan, *ROW[1:]], dtype="<f8").tobytes()),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "path", ["/v2/models/housing/infer", "/v2/models/housing/versions/previous/infer"]
)
def test_v2_abuse_is_a_clean_400_that_changes_nothing(client, path):
    problems = {}
    for label, body, headers in V2_CASES:
        data = body if isinstance(body, str) else json.dumps(body)
        response = client.post(path, data=data, content_type="application/json", headers=headers)
        found = problem(response, {400}, {"error"})
        if found:
            problems[label] = found
    for label, (data, headers) in BINARY_CASES.items():
        response = client.post(path, data=data, content_type="", headers=headers)
        found = problem(response, {400}, {"error"})
        if found:
            problems[label] = found
    assert not problems, problems


@pytest.mark.usefixtures("unchanged")
def test_v2_size_and_type_limits(client):
    big = json.dumps(v2(data=[1.0] * (LIMIT // 4))).encode()
    assert (
        problem(
            client.post("/v2/models/housing/infer", data=big, content_type="application/json"),
            {413},
            {"error"},
        )
        is None
    )
    for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = client.post(
            "/v2/models/housing/infer", data=json.dumps(v2()), content_type=content_type
        )
        assert problem(response, {415}, {"error"}) is None, content_type


def csv_text(rows: int, blank: int = 0) -> str:
    header = ",".join(IRIS.feature_names)
    line = ",".join(str(v) for v in IRIS_ROW.values())
    return header + "\n" + "\n" * blank + (line + "\n") * rows


# (label, body, content type): every one must be a 400 (or the status given).
MLFLOW_CASES: list[tuple[str, Any, str, int]] = [
    ("CSV with more rows than MAX_BATCH_ROWS", csv_text(MAX_ROWS + 1), "text/csv", 400),
    ("CSV blank-line bomb", csv_text(1, blank=200_000), "text/csv", 400),
    ("CSV one huge field", "sepal_length\n" + "9" * 200_000 + "\n", "text/csv", 400),
    ("CSV unterminated quote", 'sepal_length\n"' + "a" * 100_000, "text/csv", 400),
    ("CSV NUL bytes", "sepal_length\x00,b\n1,2\n", "text/csv", 400),
    ("CSV a thousand columns", ",".join(f"c{i}" for i in range(1000)) + "\n", "text/csv", 400),
    ("CSV header only", ",".join(IRIS.feature_names) + "\n", "text/csv", 400),
    ("CSV empty", "", "text/csv", 400),
    ("CSV BOM in the header", "\ufeff" + csv_text(1), "text/csv", 400),
    ("CSV index column", "," + csv_text(1).replace("\n", "\n0,", 1), "text/csv", 400),
    ("CSV in UTF-16", csv_text(1).encode("utf-16"), "text/csv", 400),
    (
        "JSON records past MAX_BATCH_ROWS",
        json.dumps({"dataframe_records": [IRIS_ROW] * (MAX_ROWS + 1)}),
        "application/json",
        400,
    ),
    (
        "JSON split ragged rows",
        json.dumps({"dataframe_split": {"columns": list(IRIS_ROW), "data": [[1.0]]}}),
        "application/json",
        400,
    ),
    (
        "JSON split columns not strings",
        json.dumps({"dataframe_split": {"columns": [1, 2, 3, 4], "data": [[1, 1, 1, 1]]}}),
        "application/json",
        400,
    ),
    (
        "JSON split duplicate columns",
        json.dumps({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 1]]}}),
        "application/json",
        400,
    ),
    (
        "JSON split index not a list",
        json.dumps(
            {
                "dataframe_split": {
                    "columns": list(IRIS_ROW),
                    "data": [list(IRIS_ROW.values())],
                    "index": 5,
                }
            }
        ),
        "application/json",
        400,
    ),
    (
        "JSON columns of unequal length",
        json.dumps({"inputs": {"sepal_length": [1, 2], "sepal_width": [1]}}),
        "application/json",
        400,
    ),
    (
        "JSON params not an object",
        json.dumps({"inputs": [IRIS_ROW], "params": [1]}),
        "application/json",
        400,
    ),
    (
        "JSON nested bomb",
        '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "application/json",
        400,
    ),
    (
        "JSON integer of 5,000 digits",
        '{"inputs": [{"sepal_length": ' + "9" * 5000 + "}]}",
        "application/json",
        400,
    ),
    (
        "JSON NaN",
        '{"inputs": [{"sepal_length": NaN, "sepal_width": 1, "petal_length": 1, '
        '"petal_width": 1}]}',
        "application/json",
        400,
    ),
    ("JSON a string", '"dataframe_records"', "application/json", 400),
    ("charset utf-16", json.dumps({"inputs": [IRIS_ROW]}), "application/json; charset=utf-16", 415),
    ("multipart", json.dumps({"inputs": [IRIS_ROW]}), "multipart/form-data; boundary=x", 415),
    ("parquet", b"PAR1\x00\x00PAR1", "application/vnd.apache.parquet", 415),
    ("too large", json.dumps({"inputs": [IRIS_ROW] * 4000}), "application/json", 413),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "path", ["/mlflow/iris/invocations", "/mlflow/iris/versions/challenger/invocations"]
)
def test_mlflow_abuse_is_a_clean_4xx_that_changes_nothing(client, path):
    problems = {}
    for label, body, content_type, status in MLFLOW_CASES:
        response = client.post(path, data=body, content_type=content_type)
        found = problem(response, {status}, {"error_code", "message"})
        if found:
            problems[label] = found
    assert not problems, problems


HOSTILE_PINS = [
    "0",
    "-1",
    "1.0",
    "1e3",
    "99999999999999999999",
    "%00",
    "..%2F..%2F",
    "champion%20",
    "CHAMPION",
    "x" * 5000,
    "3",
    "4",
    "5",
]


@pytest.mark.usefixtures("unchanged")
def test_hostile_pins_are_404_or_409_on_every_protocol(client):
    problems = {}
    body = {"instances": [example("housing")]}
    tensor = v2()
    for pin in HOSTILE_PINS:
        expected = {409} if pin in ("3", "4", "5") else {404}
        for path, payload, keys in (
            (f"/predict/housing?version={pin}", body, {"code", "status", "message"}),
            (f"/v2/models/housing/versions/{pin}/infer", tensor, {"error"}),
            (
                f"/mlflow/housing/versions/{pin}/invocations",
                {"dataframe_records": body["instances"]},
                {"error_code", "message"},
            ),
        ):
            response = client.post(path, json=payload)
            found = problem(response, expected, keys)
            if found:
                problems[f"{path[:60]}"] = found
        for path, keys in (
            (f"/v2/models/housing/versions/{pin}", {"error"}),
            (f"/mlflow/housing/versions/{pin}/ping", {"error_code", "message"}),
        ):
            found = problem(client.get(path), expected, keys)
            if found:
                problems[path[:60]] = found
    assert not problems, problems
