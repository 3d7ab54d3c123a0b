"""MLflow's scoring protocol, in process, judged against MLflow's own scoring server code.

The oracle is mlflow.pyfunc.scoring_server.invocations(), the function `mlflow models serve`
runs for /invocations, called on the same registered version loaded as a pyfunc: for every
payload both accept, the predictions are the same; what MLflow refuses, this API refuses too.
Where this API is stricter on purpose (the contract /predict keeps: no unknown fields, no
strings or booleans for numbers, physical bounds), the difference is listed and asserted.
MLflow's own client against the real server is test_protocol_clients.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mlflow.pyfunc
import pytest
import sklearn
from flask.testing import FlaskClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from core import registry
from core.specs import HOUSING, IRIS, MODEL_SPECS
from tests.conftest import TrainedRegistry

SPECS = {"housing": HOUSING, "iris": IRIS}


@pytest.fixture(scope="module")
def oracles(trained_registry: TrainedRegistry) -> Iterator[dict[str, Any]]:
    """Version 1 of each model as MLflow's scoring server loads it."""
    registry.configure(trained_registry.tracking_uri)
    yield {
        name: mlflow.pyfunc.load_model(registry.model_uri(spec.registered_name, "1"))
        for name, spec in SPECS.items()
    }


def oracle(model: Any, body: str, content_type: str) -> tuple[int, Any]:
    """(status, predictions or None) as `mlflow models serve` would answer."""
    try:
        # The app sets assume_finite per thread (its inputs are validated); MLflow's are not.
        with sklearn.config_context(assume_finite=False):
            result = scoring_server.invocations(
                body, content_type, model, model.metadata.get_input_schema()
            )
    except MlflowException as exc:  # the server turns these into JSON errors
        return exc.get_http_status_code(), None
    if result.status != 200:
        return result.status, None
    return 200, json.loads(result.response)["predictions"]


def ours(client: FlaskClient, name: str, body: str, content_type: str) -> tuple[int, Any]:
    response = client.post(f"/mlflow/{name}/invocations", data=body, content_type=content_type)
    payload = response.get_json()
    if response.status_code != 200:
        assert set(payload) == {"error_code", "message"}, payload
        return response.status_code, payload
    assert response.headers["X-Model-Name"] == SPECS[name].registered_name
    assert response.headers["X-Model-Version"] == "1"
    return 200, payload["predictions"]


def rows(name: str) -> list[dict[str, float]]:
    spec = MODEL_SPECS[name]
    return [{f.name: f.example * (1 + 0.2 * i) for f in spec.features} for i in range(3)]


def csv_of(records: list[dict[str, Any]], blank_lines: bool = False, crlf: bool = False) -> str:
    end = "\r\n" if crlf else "\n"
    lines = [",".join(records[0])] + [",".join(str(v) for v in r.values()) for r in records]
    return (end * 2 if blank_lines else end).join(lines) + end


def payloads(name: str) -> dict[str, tuple[str, str]]:
    """Bodies both servers accept: name -> (body, content type)."""
    records = rows(name)
    columns = list(records[0])
    split = {"columns": columns, "data": [list(r.values()) for r in records]}
    as_columns = {c: [r[c] for r in records] for c in columns}
    as_ints = [{c: int(v) or 1 for c, v in r.items()} for r in records]
    j = "application/json"
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}), j),
        "dataframe_split reordered": (
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": columns[::-1],
                        "data": [list(r.values())[::-1] for r in records],
                    }
                }
            ),
            j,
        ),
        "dataframe_split with index": (
            json.dumps({"dataframe_split": {**split, "index": [7, 8, 9]}}),
            j,
        ),
        "dataframe_records": (json.dumps({"dataframe_records": records}), j),
        "dataframe_records of integers": (
            json.dumps({"dataframe_records": as_ints}) if name == "iris" else "",
            j,
        ),
        "instances records": (json.dumps({"instances": records}), j),
        "instances columns": (json.dumps({"instances": as_columns}), j),
        "instances one record": (json.dumps({"instances": records[0]}), j),
        "inputs records": (json.dumps({"inputs": records}), j),
        "inputs columns": (json.dumps({"inputs": as_columns}), j),
        "inputs one record": (json.dumps({"inputs": records[0]}), j),
        "params ignored": (json.dumps({"inputs": records, "params": {"x": 1}}), j),
        "other keys ignored": (json.dumps({"inputs": records, "extra": 1}), j),
        "charset utf-8": (json.dumps({"inputs": records}), "application/json; charset=UTF-8"),
        "csv": (csv_of(records), "text/csv"),
        "csv blank lines, CRLF": (csv_of(records, blank_lines=True, crlf=True), "text/csv"),
    }


@pytest.mark.parametrize("name", ["housing", "iris"])
def test_what_mlflow_accepts_is_answered_with_mlflows_predictions(client, oracles, name):
    for label, (body, content_type) in payloads(name).items():
        if not body:
            continue
        expected = oracle(oracles[name], body, content_type)
        got = ours(client, name, body, content_type)
        assert expected[0] == 200, (label, expected)
        assert got[0] == 200, (label, got)
        if name == "housing":  # a compiled runtime may differ from scikit-learn within 1e-6
            assert got[1] == pytest.approx(expected[1], rel=1e-6), label
        else:
            assert got[1] == expected[1], label


def refused_by_both(name: str) -> dict[str, tuple[str, str]]:
    record = rows(name)[0]
    first = next(iter(record))
    missing = {k: v for k, v in record.items() if k != first}
    j = "application/json"
    return {
        "missing field": (json.dumps({"dataframe_records": [missing]}), j),
        "no rows": (json.dumps({"dataframe_records": []}), j),
        "split without columns": (
            json.dumps({"dataframe_split": {"data": [list(record.values())]}}),
            j,
        ),
        "unnamed lists": (json.dumps({"inputs": [list(record.values())]}), j),
        "two formats": (json.dumps({"inputs": [record], "instances": [record]}), j),
        "no format": (json.dumps({"rows": [record]}), j),
        "a list": (json.dumps([record]), j),
        "csv without header": (",".join(map(str, record.values())) + "\n", "text/csv"),
        "charset latin-1": (json.dumps({"inputs": [record]}), "application/json; charset=latin-1"),
        "format parameter": (
            json.dumps({"inputs": [record]}),
            "application/json; format=pandas-split",
        ),
        "text/plain": (json.dumps({"inputs": [record]}), "text/plain"),
    }


@pytest.mark.parametrize("name", ["housing", "iris"])
def test_what_mlflow_refuses_is_refused_with_the_same_status(client, oracles, name):
    for label, (body, content_type) in refused_by_both(name).items():
        expected = oracle(oracles[name], body, content_type)
        got = ours(client, name, body, content_type)
        assert expected[0] in (400, 415), (label, expected)
        assert got[0] == expected[0], (label, got)
        code = got[1]["error_code"]
        assert code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), (label, got)


# Values MLflow coerces or ignores (and a null, which models with native missing-value support,
# such as HistGradientBoosting, would predict from) that the contract refuses.
STRICTER = {
    "a null": ({"petal_width": None}, "petal_width: Not a valid number."),
    "an unknown column": ({"extra": 1.0}, "extra: Unknown field."),
    "a number as a string": ({"petal_width": "0.2"}, "petal_width: Not a valid number."),
    "a boolean": ({"petal_width": True}, "petal_width: Not a valid number."),
    "a negative size": (
        {"petal_width": -0.2},
        "petal_width: Must be greater than or equal to 0.0.",
    ),
}


@pytest.mark.parametrize("case", list(STRICTER))
def test_where_this_api_is_stricter_than_mlflow_it_says_why(client, oracles, case):
    change, message = STRICTER[case]
    record = {**rows("iris")[0], **change}
    body = json.dumps({"dataframe_records": [record]})
    if case != "a null":
        assert oracle(oracles["iris"], body, "application/json")[0] == 200  # coerced, ignored
    status, error = ours(client, "iris", body, "application/json")
    assert status == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert error["message"] == f"Invalid input: errors in 1 row of 1: row 0, {message}"


def test_ping_health_and_version_answer_as_mlflow_does(client):
    for path in ("/mlflow/iris/ping", "/mlflow/iris/health"):
        response = client.get(path)
        assert response.status_code == 200 and response.get_data() == b"\n"
        assert response.mimetype == "application/json"
        assert response.headers["X-Model-Version"] == "1"
    version = client.get("/mlflow/housing/version")
    assert version.status_code == 200
    assert version.get_data(as_text=True) == mlflow.__version__
    unknown = client.get("/mlflow/wine/ping")
    assert unknown.status_code == 404
    assert unknown.get_json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Model 'wine' is not served here; models: housing, iris.",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a,b\n" + "1,2\n" * 10_001, "A request holds 1 to 10000 rows; this CSV has more."),
        ("x" * 200_000 + "\n1\n", "field larger than field limit"),
        (",".join(f"c{i}" for i in range(300)) + "\n", "at most 256"),
        ("a,a\n1,2\n", "names a column twice"),
        ("sepal_length,sepal_width\n1\n", "CSV line 2 has 1 values; the header has 2."),
        (b"\xff\xfe,\n", "valid UTF-8"),
    ],
    ids=["too many rows", "huge field", "wide header", "duplicate column", "ragged", "not utf-8"],
)
def test_csv_abuse_is_a_400_that_says_why(client, body, message):
    response = client.post("/mlflow/iris/invocations", data=body, content_type="text/csv")
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["message"]
