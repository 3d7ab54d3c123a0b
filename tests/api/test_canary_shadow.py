"""Canary routing and shadow scoring in one worker, against a real registry with a challenger.

The challenger versions are constants (housing v6 predicts 3.5, iris v2 says virginica), so an
answer tells which version computed it; the champions are the pipeline's real models.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.runtime import get_runtime
from core import canary, registry
from core.prediction_log.shadow import prediction_shadow
from core.prediction_log.table import prediction_log
from core.specs import HOUSING, IRIS
from tests import procs
from tests.api.conftest import ADMIN, example, start_app
from tests.api.versions_support import (
    HOUSING_REJECTED_CONSTANT,
    IRIS_CONSTANT,
    PinnedRegistry,
    app_on,
    copy_pinned_registry,
)
from tests.conftest import TrainedRegistry

ROW = {"housing": example("housing"), "iris": example("iris")}


@pytest.fixture
def pins(pinned_registry: PinnedRegistry, tmp_path_factory) -> PinnedRegistry:
    """A private copy per test: canaries are registry tags."""
    return copy_pinned_registry(pinned_registry, tmp_path_factory.mktemp("canary"))


@pytest.fixture
def app(pins: PinnedRegistry, trained_registry: TrainedRegistry, tmp_path) -> Iterator[Flask]:
    with app_on(pins, tmp_path, trained_registry.tracking_uri, SHADOW_SHARE=1.0) as app:
        get_runtime(app).traffic.refresh()  # the challenger versions, as the first tick reads
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def predict(client: FlaskClient, model: str, request_id: str, **headers: str) -> dict[str, Any]:
    response = client.post(
        f"/predict/{model}",
        json={"instances": [ROW[model]]},
        headers={"X-Request-ID": request_id, **headers},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def from_challenger(body: dict[str, Any], model: str) -> bool:
    """Whether the constant challenger answered (and the body says so)."""
    value = body["predictions"][0]
    answered = (
        value == HOUSING_REJECTED_CONSTANT
        if model == "housing"
        else value["label"] == IRIS_CONSTANT
    )
    named = body["model"].get("alias") == "challenger"
    assert answered == named, body
    return answered


# -- the admin calls ---------------------------------------------------------------------------


def test_canary_calls_need_the_token_and_a_valid_share(client):
    assert client.put("/models/housing/canary", json={"share": 0.1}).status_code == 401
    assert client.delete("/models/housing/canary").status_code == 401
    for bad in ({"share": 0.6}, {"share": -0.1}, {"share": "a lot"}, {}, {"share": 0.1, "x": 1}):
        response = client.put("/models/housing/canary", json=bad, headers=ADMIN)
        assert response.status_code == 422, (bad, response.get_json())
        assert response.get_json()["errors"], bad
    response = client.put("/models/housing/canary", data="share=0.1", headers=ADMIN)
    assert response.status_code == 415
    assert client.put("/models/nope/canary", json={"share": 0.1}, headers=ADMIN).status_code == 404
    # Nothing changed: no canary anywhere.
    assert client.get("/models/housing/canary").get_json()["share"] == 0.0
    assert registry.model_state(HOUSING.registered_name)[1].get(canary.TAG_CANARY) is None


def test_a_canary_needs_a_challenger_that_is_not_the_champion(client, pins):
    registry.promote(IRIS.registered_name, pins.versions["iris"]["passed"])  # now champion
    response = client.put("/models/iris/canary", json={"share": 0.2}, headers=ADMIN)
    assert response.status_code == 409, response.get_json()
    MlflowClient().delete_registered_model_alias(HOUSING.registered_name, "challenger")
    response = client.put("/models/housing/canary", json={"share": 0.2}, headers=ADMIN)
    assert response.status_code == 409
    assert "no @challenger" in response.get_json()["message"]


def test_a_broken_challenger_gets_no_traffic(client, pins):
    MlflowClient().set_registered_model_alias(
        HOUSING.registered_name, "challenger", pins.versions["housing"]["load_check"]
    )
    response = client.put("/models/housing/canary", json={"share": 0.5}, headers=ADMIN)
    assert response.status_code == 409, response.get_json()
    assert "failed validation" in response.get_json()["message"]
    assert registry.model_state(HOUSING.registered_name)[1].get(canary.TAG_CANARY) is None


# -- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["housing", "iris"])
def test_the_canary_share_goes_to_the_challenger_by_routing_key(client, pins, model):
    response = client.put(f"/models/{model}/canary", json={"share": 0.3}, headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    state = response.get_json()
    assert state["active"] and state["share"] == 0.3
    assert (
        state["version"]
        == state["challenger_version"]
        == pins.versions[model]["passed" if model == "iris" else "rejected"]
    )
    n, hits = 400, 0
    for i in range(n):
        rid = f"canary-{model}-{i}"
        routed = from_challenger(predict(client, model, rid), model)
        # Each request goes where its key's stable hash says, in this and every other worker.
        assert routed == (canary.bucket(model, rid) < 0.3), rid
        hits += routed
    # Binomial(400, 0.3): mean 120, sd 9.2; 5 sd either side.
    assert abs(hits - n * 0.3) <= 5 * math.sqrt(n * 0.3 * 0.7), hits


def test_a_client_key_is_sticky_and_pinned_requests_ignore_the_canary(client):
    assert (
        client.put("/models/housing/canary", json={"share": 0.5}, headers=ADMIN).status_code == 200
    )
    keys = [f"client-{i}" for i in range(40)]
    first = {
        key: from_challenger(
            predict(client, "housing", f"{key}-0", **{"X-Client-Key": key}), "housing"
        )
        for key in keys
    }
    assert 0 < sum(first.values()) < len(keys), first  # both sides are used
    for key in keys:
        for attempt in range(1, 4):
            body = predict(client, "housing", f"{key}-{attempt}", **{"X-Client-Key": key})
            assert from_challenger(body, "housing") == first[key], key
    pinned = client.post(
        "/predict/housing?version=champion",
        json={"instances": [ROW["housing"]]},
        headers={"X-Client-Key": next(k for k, v in first.items() if v)},
    ).get_json()
    assert pinned["model"]["alias"] == "champion"


def test_abort_returns_every_request_to_the_champion_at_once(client):
    assert (
        client.put("/models/housing/canary", json={"share": 0.5}, headers=ADMIN).status_code == 200
    )
    assert any(from_challenger(predict(client, "housing", f"a-{i}"), "housing") for i in range(40))
    response = client.delete("/models/housing/canary", headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["active"] is False
    # The very next requests, with keys that were routed to the challenger before.
    assert not any(
        from_challenger(predict(client, "housing", f"a-{i}"), "housing") for i in range(40)
    )
    assert registry.model_state(HOUSING.registered_name)[1].get(canary.TAG_CANARY) is None


def test_a_canary_outlives_the_worker_and_stops_when_the_challenger_moves(
    app, client, pins, tmp_path
):
    assert (
        client.put("/models/housing/canary", json={"share": 0.5}, headers=ADMIN).status_code == 200
    )
    other = start_app(  # another worker (or a restarted one)
        MLFLOW_TRACKING_URI=pins.tracking_uri, DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}"
    )
    try:
        runtime = get_runtime(other)
        runtime.traffic.refresh()
        routed = runtime.traffic.canary("housing")
        assert routed is not None and routed.share == 0.5
        # A new candidate takes @challenger: the canary chose the old one, so it stops.
        MlflowClient().set_registered_model_alias(
            HOUSING.registered_name, "challenger", pins.versions["housing"]["passed"]
        )
        runtime.traffic.refresh()
        assert runtime.traffic.canary("housing") is None
        state = other.test_client().get("/models/housing/canary").get_json()
        assert state["active"] is False and state["share"] == 0.0
    finally:
        runtime.stop()


# -- shadow scoring ----------------------------------------------------------------------------


def _shadow_rows(app: Flask, model: str) -> list[dict[str, Any]]:
    with get_runtime(app).database().connect() as conn:
        query = select(prediction_shadow).where(prediction_shadow.c.model == model)
        return [
            dict(row) for row in conn.execute(query.order_by(prediction_shadow.c.id)).mappings()
        ]


def test_shadow_scores_routed_requests_with_the_other_version(app, client, pins):
    champion_bodies = [predict(client, "housing", f"shadow-{i}") for i in range(20)]
    assert all(body["model"]["alias"] == "champion" for body in champion_bodies)
    rows = procs.wait_until(
        lambda: (found := _shadow_rows(app, "housing")) and len(found) >= 20 and found,
        30,
        "20 shadow rows",
    )
    by_request = {row["request_id"]: row for row in rows}
    for i, body in enumerate(champion_bodies):
        row = by_request[f"shadow-{i}"]
        assert row["served"] == "champion"
        assert row["champion_version"] == body["model"]["version"]
        assert row["champion_output"] == pytest.approx(body["predictions"][0])
        assert row["challenger_version"] == pins.versions["housing"]["rejected"]
        assert row["challenger_output"] == HOUSING_REJECTED_CONSTANT
    # Pinned requests are not shadowed.
    client.post(
        "/predict/housing?version=1",
        json={"instances": [ROW["housing"]]},
        headers={"X-Request-ID": "pinned-1"},
    )
    get_runtime(app).shadow.stop()
    assert "pinned-1" not in {row["request_id"] for row in _shadow_rows(app, "housing")}


def test_shadow_under_a_canary_scores_the_champion_for_the_challengers_requests(app, client, pins):
    assert client.put("/models/iris/canary", json={"share": 0.5}, headers=ADMIN).status_code == 200
    served = {
        f"mixed-{i}": from_challenger(predict(client, "iris", f"mixed-{i}"), "iris")
        for i in range(30)
    }
    rows = procs.wait_until(
        lambda: (found := _shadow_rows(app, "iris")) and len(found) >= 30 and found, 30, "30 rows"
    )
    for row in rows:
        assert row["served"] == ("challenger" if served[row["request_id"]] else "champion")
        assert row["challenger_output"]["label"] == IRIS_CONSTANT
        assert set(row["champion_output"]["probabilities"]) == set(IRIS.classes)
    # The prediction log holds what the client got: the version that answered each request.
    procs.wait_until(lambda: _log_count(app, "iris") >= 30, 30, "30 logged rows")
    with get_runtime(app).database().connect() as conn:
        query = select(prediction_log.c.request_id, prediction_log.c.version)
        logged = dict(conn.execute(query.where(prediction_log.c.model == "iris")).all())
    for rid, to_challenger in served.items():
        assert (logged[rid] == pins.versions["iris"]["passed"]) == to_challenger


def _shadow_rows_total(client: FlaskClient, **labels: str) -> float:
    """model_shadow_rows_total of housing with these labels (label order is the exporter's)."""
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "model_shadow_rows_total" and sample.labels == {
                "model": "housing",
                **labels,
            }:
                return sample.value
    return 0.0


def _log_count(app: Flask, model: str) -> int:
    with get_runtime(app).database().connect() as conn:
        return conn.execute(
            select(func.count()).select_from(prediction_log).where(prediction_log.c.model == model)
        ).scalar_one()


def test_a_broken_shadow_version_changes_no_answer(app, client, pins):
    before = [predict(client, "housing", f"b-{i}")["predictions"] for i in range(5)]
    # @challenger now names a version that fails the load-time check: shadow cannot score it.
    MlflowClient().set_registered_model_alias(
        HOUSING.registered_name, "challenger", pins.versions["housing"]["load_check"]
    )
    get_runtime(app).traffic.refresh()
    after = [predict(client, "housing", f"c-{i}")["predictions"] for i in range(5)]
    assert after == before  # same rows, same champion, same answers
    broken = pins.versions["housing"]["load_check"]
    procs.wait_until(
        lambda: _shadow_rows_total(client, version=broken, outcome="dropped") >= 5,
        30,
        "the unscored shadow rows counted as dropped",
    )
    get_runtime(app).shadow.stop()
    assert not any(row["request_id"].startswith("c-") for row in _shadow_rows(app, "housing"))


def test_no_shadow_rows_without_a_challenger_or_with_share_zero(pins, trained_registry, tmp_path):
    with app_on(pins, tmp_path, trained_registry.tracking_uri, SHADOW_SHARE=0.0) as app:
        get_runtime(app).traffic.refresh()
        client = app.test_client()
        for i in range(10):
            predict(client, "housing", f"z-{i}")
        get_runtime(app).shadow.stop()
        assert _shadow_rows(app, "housing") == []


def test_shadow_work_beyond_the_row_bound_is_dropped_and_counted(app, client, pins):
    shadow = get_runtime(app).shadow
    shadow.max_rows = 5  # a 6-row request does not fit; 5 single rows do
    challenger = pins.versions["housing"]["rejected"]
    before = _shadow_rows_total(client, version=challenger, outcome="dropped")
    response = client.post(
        "/predict/housing",
        json={"instances": [ROW["housing"]] * 6},
        headers={"X-Request-ID": "big"},
    )
    assert response.status_code == 200
    assert _shadow_rows_total(client, version=challenger, outcome="dropped") == before + 6
    shadow.stop()
    assert "big" not in {row["request_id"] for row in _shadow_rows(app, "housing")}
