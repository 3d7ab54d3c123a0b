"""Version pinning on every protocol, against a real registry with versions to pin.

/predict?version=, /v2/models/<name>/versions/<v>/... and /mlflow/<name>/versions/<v>/...:
the version that answers is the one pinned (the extra versions are constants, so the answer
says which), unknown versions are 404, versions that failed validation 409 with the reason,
the request and prediction logs and the metrics name the version that answered, and the
champion keeps hot-swapping underneath.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.runtime import get_runtime
from core import registry
from core.prediction_log.table import prediction_log
from core.specs import HOUSING
from tests import procs
from tests.api.conftest import example, start_app
from tests.api.versions_support import (
    HOUSING_CONSTANT,
    HOUSING_REJECTED_CONSTANT,
    IRIS_CONSTANT,
    PinnedRegistry,
    app_on,
    copy_pinned_registry,
)
from tests.conftest import TrainedRegistry

ROW = {"housing": example("housing"), "iris": example("iris")}


@pytest.fixture(scope="module")
def pins(pinned_registry: PinnedRegistry, tmp_path_factory) -> PinnedRegistry:
    """A private copy: one test here promotes a version."""
    return copy_pinned_registry(pinned_registry, tmp_path_factory.mktemp("pinning"))


@pytest.fixture(scope="module")
def app(
    pins: PinnedRegistry, trained_registry: TrainedRegistry, tmp_path_factory
) -> Iterator[Flask]:
    db_dir = tmp_path_factory.mktemp("pinning-db")
    with app_on(pins, db_dir, trained_registry.tracking_uri) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def via_predict(client: FlaskClient, model: str, pin: str) -> tuple[int, Any, str | None]:
    """(status, first prediction or error body, answering version) through /predict."""
    response = client.post(f"/predict/{model}?version={pin}", json={"instances": [ROW[model]]})
    body = response.get_json()
    if response.status_code != 200:
        return response.status_code, body, None
    first = body["predictions"][0]
    return 200, first if model == "housing" else first["label"], body["model"]["version"]


def via_v2(client: FlaskClient, model: str, pin: str) -> tuple[int, Any, str | None]:
    """The same through /v2/models/<model>/versions/<pin>/infer (one [1, F] tensor)."""
    row = list(ROW[model].values())
    request = {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    response = client.post(f"/v2/models/{model}/versions/{pin}/infer", json=request)
    body = response.get_json()
    if response.status_code != 200:
        return response.status_code, body, None
    return 200, body["outputs"][0]["data"][0], body["model_version"]


def via_mlflow(client: FlaskClient, model: str, pin: str) -> tuple[int, Any, str | None]:
    """The same through /mlflow/<model>/versions/<pin>/invocations (dataframe_records)."""
    response = client.post(
        f"/mlflow/{model}/versions/{pin}/invocations", json={"dataframe_records": [ROW[model]]}
    )
    body = response.get_json()
    if response.status_code != 200:
        return response.status_code, body, None
    return 200, body["predictions"][0], response.headers["X-Model-Version"]


PROTOCOLS = [via_predict, via_v2, via_mlflow]


def error_message(body: dict[str, Any]) -> str:
    """The message of an error in any of the three shapes."""
    return body.get("message") or body.get("error") or ""


@pytest.mark.parametrize("ask", PROTOCOLS, ids=["predict", "v2", "mlflow"])
def test_the_pinned_version_answers_on_every_protocol(client, pins, ask):
    housing = pins.versions["housing"]
    champion = ask(client, "housing", "champion")
    assert champion[0] == 200 and champion[2] == "1"
    assert champion[1] not in (HOUSING_CONSTANT, HOUSING_REJECTED_CONSTANT)
    assert ask(client, "housing", "1") == champion
    assert ask(client, "housing", housing["passed"]) == (200, HOUSING_CONSTANT, housing["passed"])
    assert ask(client, "housing", "previous") == (200, HOUSING_CONSTANT, housing["passed"])
    # The gate rejected it: it passed validation, so it may be pinned (that is what it is for).
    rejected = (200, HOUSING_REJECTED_CONSTANT, housing["rejected"])
    assert ask(client, "housing", "challenger") == rejected
    assert ask(client, "housing", housing["rejected"]) == rejected
    iris = pins.versions["iris"]
    assert ask(client, "iris", "challenger") == (200, IRIS_CONSTANT, iris["passed"])
    assert ask(client, "iris", "champion")[1:] == ("setosa", "1")


def test_responses_name_the_alias_they_were_pinned_by(client, pins):
    by_alias = client.post("/predict/housing?version=previous", json=ROW["housing"]).get_json()
    assert by_alias["model"] == {
        "name": "housing",
        "registered_name": HOUSING.registered_name,
        "version": pins.versions["housing"]["passed"],
        "alias": "previous",
    }
    by_number = client.post("/predict/housing?version=1", json=ROW["housing"]).get_json()
    assert by_number["model"] == {
        "name": "housing",
        "registered_name": HOUSING.registered_name,
        "version": "1",
    }
    default = client.post("/predict/housing", json=ROW["housing"]).get_json()
    assert default["model"]["alias"] == "champion" and default["model"]["version"] == "1"


@pytest.mark.parametrize("ask", PROTOCOLS, ids=["predict", "v2", "mlflow"])
@pytest.mark.parametrize(
    ("model", "pin"),
    [("housing", "99"), ("housing", "latest"), ("housing", "01"), ("iris", "previous")],
)
def test_unknown_versions_are_404(client, ask, model, pin):
    status, body, _ = ask(client, model, pin)
    assert status == 404, body
    assert pin in error_message(body) or f"@{pin}" in error_message(body)


@pytest.mark.parametrize("ask", PROTOCOLS, ids=["predict", "v2", "mlflow"])
@pytest.mark.parametrize(
    ("model", "role", "reason"),
    [
        ("housing", "failed", "gate(s) max_rmse did not pass"),
        ("housing", "unvalidated", "no validation report"),
        ("housing", "load_check", "load-time check: model expects 3 features"),
        ("iris", "failed", "gate(s) max_rmse did not pass"),
    ],
)
def test_versions_that_failed_validation_are_409_with_the_reason(
    client, pins, ask, model, role, reason
):
    version = pins.versions[model][role]
    status, body, _ = ask(client, model, version)
    assert status == 409, body
    message = error_message(body)
    assert f"Version {version} of" in message and "failed validation" in message
    assert reason in message


def test_v2_metadata_and_readiness_of_pinned_versions(client, pins):
    housing = pins.versions["housing"]
    metadata = client.get(f"/v2/models/housing/versions/{housing['passed']}").get_json()
    assert metadata["parameters"]["version"] == housing["passed"]
    assert metadata["versions"] == [str(v) for v in range(1, 7)]
    by_alias = client.get("/v2/models/housing/versions/challenger").get_json()
    assert by_alias["parameters"]["version"] == housing["rejected"]
    assert by_alias["parameters"]["alias"] == "challenger"
    ready = client.get(f"/v2/models/iris/versions/{pins.versions['iris']['passed']}/ready")
    assert ready.status_code == 200 and ready.get_json() == {"name": "iris", "ready": True}
    assert client.get(f"/v2/models/housing/versions/{housing['failed']}/ready").status_code == 409
    assert client.get("/v2/models/housing/versions/42/ready").status_code == 404
    assert client.get(f"/mlflow/housing/versions/{housing['failed']}/ping").status_code == 409
    ping = client.get(f"/mlflow/housing/versions/{housing['passed']}/ping")
    assert ping.status_code == 200 and ping.headers["X-Model-Version"] == housing["passed"]


def _predictions_total(client: FlaskClient, model: str, version: str) -> float:
    prefix = f'model_predictions_total{{model="{model}",version="{version}"}} '
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_logs_and_metrics_name_the_version_that_answered(app, client, pins, caplog):
    version = pins.versions["housing"]["passed"]
    before = _predictions_total(client, "housing", version)
    request_ids = []
    with caplog.at_level(logging.INFO, logger="app.request"):
        for path, body in (
            (f"/predict/housing?version={version}", {"instances": [ROW["housing"]] * 2}),
            (
                f"/v2/models/housing/versions/{version}/infer",
                {
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [2, 8],
                            "datatype": "FP64",
                            "data": list(ROW["housing"].values()) * 2,
                        }
                    ]
                },
            ),
            (
                f"/mlflow/housing/versions/{version}/invocations",
                {"dataframe_records": [ROW["housing"]] * 2},
            ),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 200, response.get_json()
            request_ids.append(response.headers["X-Request-ID"])
    assert _predictions_total(client, "housing", version) == before + 6

    logged = {
        record.fields["request_id"]: record.fields
        for record in caplog.records
        if getattr(record, "fields", None) and record.fields.get("request_id") in request_ids
    }
    assert {(f["model"], f["version"], f["rows"], f["status"]) for f in logged.values()} == {
        ("housing", version, 2, 200)
    }, logged

    runtime = get_runtime(app)
    runtime.prediction_log.flush()
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            select(prediction_log.c.request_id, prediction_log.c.model, prediction_log.c.version)
        ).fetchall()
    mine = [row for row in rows if row[0] in request_ids]
    assert len(mine) == 6 and {(row[1], row[2]) for row in mine} == {("housing", version)}


def test_pinning_leaves_the_champion_hot_swap_alone(app, client, pins):
    runtime = get_runtime(app)
    passed = pins.versions["housing"]["passed"]
    assert via_predict(client, "housing", "1")[2] == "1"
    registry.configure(pins.tracking_uri)
    registry.promote(HOUSING.registered_name, passed)  # v1 becomes @previous
    assert runtime.cache.refresh()["housing"] == "loaded"
    # The default and @champion follow the swap; the old champion is still pinnable, by number
    # and (within MODEL_REFRESH_SECONDS) as @previous.
    assert via_predict(client, "housing", "champion") == (200, HOUSING_CONSTANT, passed)
    assert (
        client.post("/predict/housing", json=ROW["housing"]).get_json()["model"]["version"]
        == passed
    )
    assert via_v2(client, "housing", "1")[2] == "1"
    procs.wait_until(
        lambda: via_mlflow(client, "housing", "previous")[2] == "1", 10, "@previous to follow"
    )
    # A pin naming the champion's number is the hot-swapped record, never a second copy.
    assert via_predict(client, "housing", passed)[2] == passed
    assert f"housing:{passed}" not in runtime.versions.status()["versions"]
    assert "housing:1" in runtime.versions.status()["versions"]


def test_the_cache_bounds_come_from_the_configuration(trained_registry, pins, tmp_path: Path):
    with procs.environ(
        {k: pins.env[k] for k in ("STATE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    ):
        app = start_app(
            MLFLOW_TRACKING_URI=pins.tracking_uri,
            DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
            PINNED_VERSIONS_MAX=1,
            PINNED_VERSIONS_MAX_MB=64,
        )
    try:
        versions = get_runtime(app).versions
        assert versions.max_versions == 1 and versions.max_bytes == 64 * 1024 * 1024
        client = app.test_client()
        assert via_predict(client, "iris", pins.versions["iris"]["passed"])[0] == 200
        assert via_predict(client, "housing", pins.versions["housing"]["rejected"])[0] == 200
        assert versions.status()["versions"] == [f"housing:{pins.versions['housing']['rejected']}"]
    finally:
        get_runtime(app).stop()
        registry.configure(trained_registry.tracking_uri)
