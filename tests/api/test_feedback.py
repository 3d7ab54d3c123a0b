"""POST /feedback: idempotency, conflicts, all-or-nothing errors, auth, and the log-flush race."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect, select

from app import create_app
from app.runtime import get_runtime
from core.feedback import prediction_feedback
from tests.api.conftest import ADMIN, config_with, example, start_app

VIRGINICA = {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}


def _predict(client: FlaskClient, model: str, body: dict) -> dict:
    response = client.post(f"/predict/{model}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _feedback(client: FlaskClient, body, headers=ADMIN):
    return client.post("/feedback", json=body, headers=headers)


def _stored(app: Flask) -> list[tuple]:
    """Every stored label, in insertion order (the table exists after the first feedback)."""
    table = prediction_feedback.c
    query = select(table.id, table.request_id, table.row_index, table.version, table.actual)
    with get_runtime(app).engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(table.id))]


def _has_table(app: Flask) -> bool:
    return inspect(get_runtime(app).engine).has_table("prediction_feedback")


def _feedback_count(client: FlaskClient, model: str, outcome: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "model_feedback_total" and sample.labels == {
                "model": model,
                "outcome": outcome,
            }:
                return sample.value
    return 0.0


@pytest.fixture
def housing_id(client) -> str:
    """The request id of a fresh single housing prediction."""
    return _predict(client, "housing", example("housing"))["request_id"]


def test_single_label_is_stored_once_and_repeats_are_duplicates(api_app, client, housing_id):
    accepted_before = _feedback_count(client, "housing", "accepted")
    duplicate_before = _feedback_count(client, "housing", "duplicate")
    first = _feedback(client, {"request_id": housing_id, "actual": 2.5})
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["accepted"] == 1 and body["duplicates"] == 0
    (label,) = body["labels"]
    assert set(label) == {"request_id", "row_index", "model", "version", "prediction", "actual"}
    assert label["request_id"] == housing_id and label["row_index"] == 0
    assert label["model"] == "housing" and label["version"] == "1"
    assert label["actual"] == 2.5 and isinstance(label["prediction"], float)
    stored = _stored(api_app)

    again = _feedback(client, {"request_id": housing_id, "row_index": 0, "actual": 2.5})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["accepted"] == 0 and again.get_json()["duplicates"] == 1
    assert again.get_json()["labels"] == body["labels"]
    assert _stored(api_app) == stored

    changed = _feedback(client, {"request_id": housing_id, "actual": 3.0})
    assert changed.status_code == 409
    error = changed.get_json()
    assert error["code"] == 409 and error["status"] == "Conflict"
    assert set(error["errors"]) == {"actual"} and "2.5" in error["errors"]["actual"][0]
    assert _stored(api_app) == stored

    assert _feedback_count(client, "housing", "accepted") == accepted_before + 1
    assert _feedback_count(client, "housing", "duplicate") == duplicate_before + 1


def test_iris_prediction_is_reported_as_its_label(client):
    predicted = _predict(client, "iris", {"instances": [example("iris"), VIRGINICA]})
    rid = predicted["request_id"]
    response = _feedback(
        client,
        {
            "labels": [
                {"request_id": rid, "actual": "setosa"},
                {"request_id": rid, "row_index": 1, "actual": "versicolor"},
            ]
        },
    )
    assert response.status_code == 200, response.get_json()
    labels = response.get_json()["labels"]
    assert [x["prediction"] for x in labels] == [p["label"] for p in predicted["predictions"]]
    assert [x["actual"] for x in labels] == ["setosa", "versicolor"]
    assert [x["row_index"] for x in labels] == [0, 1]


@pytest.mark.parametrize(
    ("model", "actual"),
    [
        ("housing", "2.5"),  # a string for a regression model
        ("housing", -1.0),
        ("housing", 1000.0),  # 100 M USD: surely a unit mistake
        ("housing", True),
        ("housing", None),
        ("housing", [2.5]),
        ("housing", {"value": 2.5}),
        ("iris", "rose"),
        ("iris", "Setosa"),
        ("iris", 1),  # a class index is not a label
        ("iris", ""),
        ("iris", "x" * 101),
    ],
)
def test_wrong_actual_is_422_and_stores_nothing(api_app, client, model, actual):
    rid = _predict(client, model, example(model))["request_id"]
    before = _stored(api_app) if _has_table(api_app) else []
    response = _feedback(client, {"request_id": rid, "actual": actual})
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == 422 and set(body["errors"]) == {"actual"}, body
    if _has_table(api_app):
        assert _stored(api_app) == before
    # A batch names the label by its position, then the field.
    ok = {"request_id": rid, "actual": "setosa" if model == "iris" else 2.0}
    batch = _feedback(client, {"labels": [ok, {"request_id": rid, "actual": actual}]})
    assert batch.status_code == 422, batch.get_json()
    assert set(batch.get_json()["errors"]["labels"]) == {"1"}
    assert set(batch.get_json()["errors"]["labels"]["1"]) == {"actual"}
    if _has_table(api_app):
        assert _stored(api_app) == before


def test_non_finite_actuals_are_422(client, housing_id):
    # The standard JSON parser reads NaN/Infinity; they must not become labels.
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        raw = f'{{"request_id": "{housing_id}", "actual": {literal}}}'
        response = client.post(
            "/feedback", data=raw, content_type="application/json", headers=ADMIN
        )
        assert response.status_code == 422, (literal, response.get_json())
        assert set(response.get_json()["errors"]) == {"actual"}


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        ('{"request_id": "\\ud800", "actual": 1.0}', 422, "request_id"),  # lone surrogate
        ('{"request_id": "a\\u0000b", "actual": 1.0}', 422, "request_id"),
        ('{"request_id": "x", "actual": "\\udfff"}', 422, "actual"),
        ('{"request_id": "x", "actual": ' + "9" * 5000 + "}", 400, None),
        ("[" * 100_000 + "]" * 100_000, 400, None),
        ('{"request_id": "x", "actual": 1.0', 400, None),
        ("", 400, None),
    ],
)
def test_hostile_bodies_are_4xx(api_app, client, raw, status, field):
    before = _stored(api_app) if _has_table(api_app) else []
    response = client.post("/feedback", data=raw, content_type="application/json", headers=ADMIN)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["code"] == status
    if field:
        assert set(body["errors"]) == {field}, body
    if _has_table(api_app):
        assert _stored(api_app) == before


def test_unknown_prediction_is_404_after_a_bounded_wait(api_app, client, housing_id):
    started = time.monotonic()
    response = _feedback(client, {"request_id": "no-such-request", "actual": 1.0})
    elapsed = time.monotonic() - started
    assert response.status_code == 404, response.get_json()
    body = response.get_json()
    assert body["code"] == 404 and set(body["errors"]) == {"request_id"}
    assert "no-such-request" in body["errors"]["request_id"][0]
    # The wait for other workers' buffered rows is bounded (2 flush intervals + margin, <= 2 s
    # of sleeping); the ceiling leaves room for a loaded machine, not for an unbounded wait.
    assert elapsed < 10, elapsed
    # A row index the prediction does not have is unknown too.
    response = _feedback(client, {"request_id": housing_id, "row_index": 1, "actual": 1.0})
    assert response.status_code == 404


def test_batch_is_all_or_nothing(api_app, client):
    batch = _predict(client, "housing", {"instances": [example("housing")] * 3})
    rid = batch["request_id"]
    good = [{"request_id": rid, "row_index": i, "actual": 1.0 + i} for i in range(3)]
    assert _feedback(client, good[2]).status_code == 200
    before = _stored(api_app)

    missing = _feedback(client, {"labels": [*good[:2], {"request_id": "nope", "actual": 1.0}]})
    assert missing.status_code == 404, missing.get_json()
    errors = missing.get_json()["errors"]
    assert list(errors) == ["labels"] and list(errors["labels"]) == ["2"]
    assert list(errors["labels"]["2"]) == ["request_id"]
    conflict = _feedback(client, {"labels": [*good[:2], {**good[2], "actual": 4.0}]})
    assert conflict.status_code == 409, conflict.get_json()
    assert set(conflict.get_json()["errors"]["labels"]) == {"2"}
    # Two different labels for one row inside one batch conflict as well.
    twice = _feedback(client, {"labels": [good[0], {**good[0], "actual": 9.0}]})
    assert twice.status_code == 409
    assert set(twice.get_json()["errors"]["labels"]) == {"1"}
    mixed = _feedback(
        client,
        {"labels": [{"request_id": "nope", "actual": 1.0}, {**good[0], "actual": "cheap"}]},
    )
    # Every problem is named; the status is the first kind that applies (404 before 422).
    assert mixed.status_code == 404
    assert {k: set(v) for k, v in mixed.get_json()["errors"]["labels"].items()} == {
        "0": {"request_id"},
        "1": {"actual"},
    }
    assert _stored(api_app) == before

    # Nothing of the failed batches was stored: the first two labels are new now.
    ok = _feedback(client, {"labels": good})
    assert ok.status_code == 200, ok.get_json()
    assert (ok.get_json()["accepted"], ok.get_json()["duplicates"]) == (2, 1)
    assert [x["row_index"] for x in ok.get_json()["labels"]] == [0, 1, 2]
    assert len(_stored(api_app)) == len(before) + 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"actual": 1.0}, "request_id"),
        ({"request_id": "x"}, "actual"),
        ({"request_id": "x", "actual": 1.0, "model": "housing"}, "model"),
        ({"request_id": "", "actual": 1.0}, "request_id"),
        ({"request_id": "x" * 129, "actual": 1.0}, "request_id"),
        ({"request_id": 7, "actual": 1.0}, "request_id"),
        ({"request_id": "x", "row_index": -1, "actual": 1.0}, "row_index"),
        ({"request_id": "x", "row_index": 1.0, "actual": 1.0}, "row_index"),
        ({"request_id": "x", "row_index": "0", "actual": 1.0}, "row_index"),
        ({"request_id": "x", "row_index": True, "actual": 1.0}, "row_index"),
        ({"request_id": "x", "row_index": 2**31, "actual": 1.0}, "row_index"),
        ({"labels": []}, "labels"),
        ({"labels": {"request_id": "x", "actual": 1.0}}, "labels"),
        ({"labels": [{"request_id": "x", "actual": 1.0, "extra": 1}]}, "labels"),
        ({"labels": [{"request_id": "x", "actual": 1.0}], "request_id": "x"}, "request_id"),
        ({}, "request_id"),
    ],
)
def test_malformed_bodies_are_422(api_app, client, body, field):
    before = _stored(api_app) if _has_table(api_app) else []
    response = _feedback(client, body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == 422
    assert field in response.get_json()["errors"], response.get_json()
    if _has_table(api_app):
        assert _stored(api_app) == before


def test_too_many_labels_is_422(client):
    labels = [{"request_id": "x", "actual": 1.0}] * 10_001
    response = _feedback(client, {"labels": labels})
    assert response.status_code == 422
    assert "10000" in response.get_json()["errors"]["labels"][0]


def test_not_json_and_malformed_json(client):
    not_json = client.post("/feedback", data="request_id=x", headers=ADMIN)
    assert not_json.status_code == 415 and not_json.get_json()["code"] == 415
    malformed = client.post("/feedback", data="{", content_type="application/json", headers=ADMIN)
    assert malformed.status_code == 400 and malformed.get_json()["code"] == 400
    not_object = _feedback(client, [{"request_id": "x", "actual": 1.0}])
    assert not_object.status_code == 422


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]
)
def test_feedback_needs_the_admin_token(api_app, client, housing_id, headers):
    before = _stored(api_app) if _has_table(api_app) else []
    response = _feedback(client, {"request_id": housing_id, "actual": 1.0}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if _has_table(api_app):
        assert _stored(api_app) == before


def test_feedback_is_refused_without_a_configured_token(trained_registry):
    app = create_app(config_with(API_ADMIN_TOKEN=None))
    response = app.test_client().post(
        "/feedback", json={"request_id": "x", "actual": 1.0}, headers=ADMIN
    )
    assert response.status_code == 403 and "API_ADMIN_TOKEN" in response.get_json()["message"]


@pytest.fixture(scope="module")
def slow_flush_app(trained_registry, tmp_path_factory) -> Iterator[Flask]:
    """An app whose periodic log flush never happens during a test."""
    db = tmp_path_factory.mktemp("slow-flush") / "app.db"
    app = start_app(
        MLFLOW_TRACKING_URI=trained_registry.tracking_uri,
        DATABASE_URL=f"sqlite:///{db}",
        PREDICTION_LOG_FLUSH_SECONDS=600.0,
    )
    yield app
    get_runtime(app).stop()


def test_feedback_right_after_a_prediction_finds_the_buffered_row(slow_flush_app):
    client = slow_flush_app.test_client()
    writer = get_runtime(slow_flush_app).prediction_log
    for _ in range(3):
        predicted = _predict(client, "iris", {"instances": [example("iris"), VIRGINICA]})
        assert writer.pending_rows >= 2  # still in this worker's buffer, not in the database
        started = time.monotonic()
        response = _feedback(
            client, {"request_id": predicted["request_id"], "row_index": 1, "actual": "virginica"}
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["accepted"] == 1
        # Found by flushing this worker's buffer, not by waiting out the (10 min) interval.
        assert time.monotonic() - started < 1.0
        assert writer.pending_rows == 0


def test_concurrent_same_label_is_stored_once(api_app):
    client = api_app.test_client()
    rid = _predict(client, "iris", example("iris"))["request_id"]
    results: list[dict] = []

    def send() -> None:
        response = api_app.test_client().post(
            "/feedback", json={"request_id": rid, "actual": "setosa"}, headers=ADMIN
        )
        results.append({"status": response.status_code, **response.get_json()})

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r["status"] for r in results] == [200] * 6, results
    assert sum(r["accepted"] for r in results) == 1
    assert sum(r["duplicates"] for r in results) == 5
    assert sum(1 for row in _stored(api_app) if row[1] == rid) == 1


@pytest.mark.slow
def test_predict_then_feedback_at_once_on_two_gunicorn_workers(trained_registry, gunicorn_factory):
    """Labels sent right after predictions succeed whichever worker answers either request."""
    server = gunicorn_factory(trained_registry.env)  # 2 workers, log flushed every 0.5 s
    statuses: list[int] = []
    waits: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(8):
            row = {**example("housing"), "MedInc": 1.0 + k + i / 10}
            predicted = server.post("/predict/housing", json=row).json()
            started = time.monotonic()
            response = server.post(
                "/feedback",
                json={"request_id": predicted["request_id"], "actual": 2.0},
                headers=ADMIN,
            )
            with lock:
                statuses.append(response.status_code)
                waits.append(time.monotonic() - started)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [200] * 48, statuses
    performance = server.get("/models/housing/performance").json()
    assert [v["labelled"] for v in performance["versions"]] == [48]
    print(f"feedback latency: max {max(waits):.3f}s, median {sorted(waits)[24]:.3f}s")
