"""GET /models/<name>/performance and /drift: live quality from feedback, the newest drift check."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from app.runtime import get_runtime
from core import monitor_reports
from core.feedback import MAX_WINDOW
from tests.api.conftest import ADMIN, example

HOUSING_SINGLE = example("housing")
HOUSING_BATCH = [
    {**example("housing"), "MedInc": 1.5, "HouseAge": 12.0},
    {**example("housing"), "MedInc": 4.0, "AveRooms": 5.0, "Latitude": 34.05, "Longitude": -118.25},
    {**example("housing"), "MedInc": 2.5, "AveOccup": 3.2},
]
IRIS_SINGLE = example("iris")
IRIS_BATCH = [
    {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
    example("iris"),  # a textbook setosa, labelled versicolor below: a sure miss
]
DRIFT_REPORT = {
    "version": "1",
    "status": "drift",
    "overall_psi": 0.31,
    "threshold": 0.2,
    "window_rows": 800,
    "min_rows": 500,
    "features": {"MedInc": 0.31, "HouseAge": 0.02},
}


def _post(client: FlaskClient, path: str, body: dict, **kwargs) -> dict:
    response = client.post(path, json=body, **kwargs)
    assert response.status_code == 200, (path, response.get_json())
    return response.get_json()


def _performance(client: FlaskClient, model: str, query: str = "") -> dict:
    response = client.get(f"/models/{model}/performance{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _regression(pairs: list[tuple[float, float]]) -> dict[str, float]:
    errors = [p - a for p, a in pairs]
    return {
        "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
        "mae": sum(abs(e) for e in errors) / len(errors),
    }


def test_housing_round_trip_matches_metrics_computed_by_hand(client):
    empty = _performance(client, "housing")
    assert empty == {
        "model": "housing",
        "registered_name": "CaliforniaHousingBestModel",
        "task": "regression",
        "window": 500,
        "served_version": "1",
        "versions": [],
    }

    single = _post(client, "/predict/housing", HOUSING_SINGLE)
    batch = _post(client, "/predict/housing", {"instances": HOUSING_BATCH})
    labelled = _post(
        client, "/feedback", {"request_id": single["request_id"], "actual": 4.5}, headers=ADMIN
    )
    assert labelled["accepted"] == 1
    # Batch row 1 stays unlabelled: it must not count.
    labels = [
        {"request_id": batch["request_id"], "row_index": 0, "actual": 1.0},
        {"request_id": batch["request_id"], "row_index": 2, "actual": 1.75},
    ]
    stored = _post(client, "/feedback", {"labels": labels}, headers=ADMIN)
    assert stored["accepted"] == 2 and stored["duplicates"] == 0
    assert [x["prediction"] for x in stored["labels"]] == [
        batch["predictions"][0],
        batch["predictions"][2],
    ]
    pairs = [
        (single["prediction"], 4.5),
        (batch["predictions"][0], 1.0),
        (batch["predictions"][2], 1.75),
    ]

    body = _performance(client, "housing")
    (version,) = body["versions"]
    assert version["version"] == "1" and version["labelled"] == 3 and version["window"] == 500
    expected = _regression(pairs)
    assert version["metrics"] == pytest.approx(expected, rel=1e-9)
    assert expected["rmse"] > expected["mae"] > 0  # distinct, non-trivial numbers
    first = datetime.fromisoformat(version["first_labelled_at"])
    last = datetime.fromisoformat(version["last_labelled_at"])
    assert first.utcoffset().total_seconds() == 0 and first <= last

    # The window keeps the newest labels: here the two of the batch.
    newest = _performance(client, "housing", "?window=2")
    assert newest["window"] == 2
    (version,) = newest["versions"]
    assert version["labelled"] == 2
    assert version["metrics"] == pytest.approx(_regression(pairs[1:]), rel=1e-9)
    # Iris has no labels of its own.
    assert _performance(client, "iris")["versions"] == []


def test_iris_round_trip_matches_accuracy_computed_by_hand(client):
    single = _post(client, "/predict/iris", IRIS_SINGLE)
    batch = _post(client, "/predict/iris", {"instances": IRIS_BATCH})
    actuals = ["setosa", "versicolor", "virginica", "versicolor"]
    predicted = [single["prediction"], *(p["label"] for p in batch["predictions"])]
    _post(
        client,
        "/feedback",
        {"request_id": single["request_id"], "actual": actuals[0]},
        headers=ADMIN,
    )
    labels = [
        {"request_id": batch["request_id"], "row_index": i, "actual": actual}
        for i, actual in enumerate(actuals[1:])
    ]
    stored = _post(client, "/feedback", {"labels": labels}, headers=ADMIN)
    assert [x["prediction"] for x in stored["labels"]] == predicted[1:]

    hits = [p == a for p, a in zip(predicted, actuals, strict=True)]
    assert 0 < sum(hits) < len(hits)  # the setosa labelled versicolor is a miss
    body = _performance(client, "iris")
    assert body["task"] == "classification" and body["served_version"] == "1"
    (version,) = body["versions"]
    assert version["labelled"] == 4
    assert version["metrics"] == {"accuracy": pytest.approx(sum(hits) / len(hits))}


def test_performance_errors(client):
    response = client.get("/models/wine/performance")
    assert response.status_code == 404 and response.get_json()["code"] == 404
    for window in ("0", "-1", str(MAX_WINDOW + 1), "abc", "1.5", ""):
        response = client.get(f"/models/housing/performance?window={window}")
        assert response.status_code == 422, (window, response.get_json())
        body = response.get_json()
        assert body["code"] == 422 and set(body["errors"]) == {"window"}, body
    assert _performance(client, "housing", f"?window={MAX_WINDOW}")["window"] == MAX_WINDOW


def test_drift_is_pending_until_a_report_then_the_newest(api_app, client):
    pending = client.get("/models/housing/drift")
    assert pending.status_code == 200, pending.get_json()
    assert pending.get_json() == {
        "model": "housing",
        "checked_at": None,
        "status": "pending",
        "version": None,
        "overall_psi": None,
        "threshold": None,
        "window_rows": None,
        "min_rows": None,
        "features": {},
    }

    engine = get_runtime(api_app).engine
    monitor_reports.save(engine, monitor_reports.DRIFT, "housing", {**DRIFT_REPORT, "status": "ok"})
    created = monitor_reports.save(engine, monitor_reports.DRIFT, "housing", DRIFT_REPORT)
    body = client.get("/models/housing/drift").get_json()  # public: no token
    assert datetime.fromisoformat(body.pop("checked_at")) == created
    assert body == {"model": "housing", **DRIFT_REPORT}
    # Reports are per model.
    assert client.get("/models/iris/drift").get_json()["status"] == "pending"

    unknown = client.get("/models/wine/drift")
    assert unknown.status_code == 404
    assert unknown.get_json()["code"] == 404 and "wine" in unknown.get_json()["message"]


def test_openapi_documents_the_monitoring_endpoints(client):
    spec = client.get("/openapi.json").get_json()
    feedback = spec["paths"]["/feedback"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "413", "415", "422", "503"} <= set(
        feedback["responses"]
    )
    assert feedback["security"] == [{"bearerAuth": []}]
    assert "idempotent" in feedback["description"] and "409" in feedback["description"]
    examples = feedback["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"single", "batch"}
    ok = feedback["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/FeedbackResult"}
    stored = spec["components"]["schemas"]["StoredLabel"]["properties"]
    assert set(stored) == {"request_id", "row_index", "model", "version", "prediction", "actual"}

    performance = spec["paths"]["/models/{name}/performance"]["get"]
    assert {"200", "404", "422", "503"} <= set(performance["responses"])
    (window,) = [p for p in performance["parameters"] if p["name"] == "window"]
    assert window["in"] == "query" and window["schema"]["default"] == 500
    assert window["schema"]["maximum"] == MAX_WINDOW

    drift = spec["paths"]["/models/{name}/drift"]["get"]
    assert {"200", "404", "503"} <= set(drift["responses"])
    assert "security" not in drift
    report = spec["components"]["schemas"]["DriftReport"]["properties"]
    assert "pending" in report["status"]["enum"]


def test_generated_requests_never_get_a_5xx(api_app):
    """Fuzz the two read endpoints from their own OpenAPI description."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api_app)
    wanted = {"/models/{name}/performance", "/models/{name}/drift"}
    operations = [op.ok() for op in schema.get_all_operations()]
    selected = [op for op in operations if op.path in wanted and op.method.upper() == "GET"]
    assert {op.path for op in selected} == wanted
    failures: list = []

    for operation in selected:

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def call(case) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append((case.path, case.query, response.status_code, response.text))
            if response.status_code >= 400:
                assert {"code", "status", "message"} <= set(response.json())

        call()
    assert not failures, failures[:3]
