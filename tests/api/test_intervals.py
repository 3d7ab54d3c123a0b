"""Conformal prediction intervals served on request: ?interval= on /predict/housing, the
`interval` parameter of V2 and of the MLflow protocol; bad levels are 4xx and change nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from app.runtime import get_runtime
from core import registry
from core.conformal import Intervals
from core.prediction_log.table import prediction_log
from core.specs import HOUSING
from pipeline import io
from tests.api.conftest import example
from tests.api.versions_support import PinnedRegistry, app_on

ROW = example("housing")


def _holdout(workspace: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(workspace / io.prepared_dir("housing") / "holdout.csv")
    x = frame[HOUSING.feature_names].to_numpy(float)[:rows]
    return x, frame["target"].to_numpy(float)[:rows]


def _served_intervals() -> Intervals:
    data = registry.load_conformal(HOUSING.registered_name, "1")
    assert data is not None, "the pipeline stored no conformal.json with version 1"
    return Intervals.from_json(data)


def test_a_single_prediction_gets_its_interval(client):
    body = client.post("/predict/housing?interval=0.9", json=ROW).get_json()
    interval = body["interval"]
    assert interval["level"] == 0.9
    assert interval["lower"] < body["prediction"] < interval["upper"]
    expected = _served_intervals().bounds(np.array([body["prediction"]]), 0.9)
    assert (interval["lower"], interval["upper"]) == (expected[0][0], expected[1][0])
    assert list(body) == ["prediction", "unit", "interval", "model", "request_id"]
    # Without the parameter the answer is as before.
    assert "interval" not in client.post("/predict/housing", json=ROW).get_json()


def test_intervals_widen_with_the_level_and_cover_the_holdout(client, trained_registry):
    x, y = _holdout(trained_registry.workspace, 2000)
    records = [dict(zip(HOUSING.feature_names, row, strict=True)) for row in x.tolist()]
    widths = {}
    for level in (0.8, 0.9, 0.95):
        response = client.post(f"/predict/housing?interval={level}", json={"instances": records})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        bounds = body["intervals"]
        assert len(bounds) == len(records) == len(body["predictions"])
        lower = np.array([b["lower"] for b in bounds])
        upper = np.array([b["upper"] for b in bounds])
        assert all(b["level"] == level for b in bounds)
        # Clipped to the training target's range (housing values stop at 5.00001): a prediction
        # beyond it has an interval that ends at the range; any other lies inside its interval.
        predicted = np.array(body["predictions"])
        y_min, y_max = _served_intervals().y_range
        inside = (predicted >= y_min) & (predicted <= y_max)
        assert np.all(lower <= upper) and np.all(lower >= y_min) and np.all(upper <= y_max)
        assert np.all((lower <= predicted) & (predicted <= upper) | ~inside)
        coverage = float(np.mean((y >= lower) & (y <= upper)))
        # The pipeline's gate holds coverage within 2 points on the whole holdout; 2,000 rows of
        # it through the API: 3 points (about 4 standard errors at 0.9).
        assert abs(coverage - level) <= 0.03, (level, coverage)
        widths[level] = float(np.mean(upper - lower))
    assert widths[0.8] < widths[0.9] < widths[0.95], widths


def _logged(app, request_id: str) -> int:
    get_runtime(app).prediction_log.flush()
    with get_runtime(app).database().connect() as conn:
        query = select(prediction_log.c.id).where(prediction_log.c.request_id == request_id)
        return len(conn.execute(query).all())


@pytest.mark.parametrize(
    ("level", "status"),
    [
        *[(bad, 422) for bad in ("0", "1", "-0.5", "1.5", "abc", "nan", "inf", "")],
        # In (0, 1), but beyond what the version's calibration supports: a conflict, not bad
        # input (the contract fuzz holds a schema-valid value to that).
        *[(beyond, 409) for beyond in ("0.9999999", "1e-300", "0.0001")],
    ],
)
def test_bad_levels_are_4xx_and_change_nothing(api_app, client, level, status):
    rid = f"bad-level-{uuid.uuid4().hex}"
    response = client.post(
        f"/predict/housing?interval={level}", json=ROW, headers={"X-Request-ID": rid}
    )
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    if status == 422:
        assert body["errors"]["interval"], body
    else:
        assert body["message"].startswith("Version 1 of CaliforniaHousingBestModel: interval level")
        assert "must be in [" in body["message"], body
    assert _logged(api_app, rid) == 0


def test_intervals_are_for_the_regression_model(client):
    response = client.post("/predict/iris?interval=0.9", json=example("iris"))
    assert response.status_code == 422
    assert "classifier" in response.get_json()["errors"]["interval"][0]


def test_a_version_without_calibration_is_409(
    pinned_registry: PinnedRegistry, trained_registry, tmp_path
):
    with app_on(pinned_registry, tmp_path, trained_registry.tracking_uri) as app:
        client = app.test_client()
        response = client.post("/predict/housing?version=previous&interval=0.9", json=ROW)
        assert response.status_code == 409, response.get_json()
        assert "no conformal calibration" in response.get_json()["message"]
        assert client.post("/predict/housing?version=previous", json=ROW).status_code == 200


def _v2(client, parameters: dict[str, Any] | None, outputs: list[str] | None = None):
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [2, len(HOUSING.feature_names)],
                "data": [ROW[f] for f in HOUSING.feature_names] * 2,
            }
        ]
    }
    if parameters is not None:
        body["parameters"] = parameters
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return client.post("/v2/models/housing/infer", json=body)


def test_v2_interval_parameter_adds_lower_and_upper_outputs(client):
    response = _v2(client, {"interval": 0.9})
    assert response.status_code == 200, response.get_json()
    outputs = {o["name"]: o for o in response.get_json()["outputs"]}
    assert set(outputs) == {"prediction", "lower", "upper"}
    for name in ("lower", "upper"):
        assert outputs[name]["datatype"] == "FP64" and outputs[name]["shape"] == [2]
        assert outputs[name]["parameters"] == {"interval": 0.9}
    for lo, p, hi in zip(
        outputs["lower"]["data"],
        outputs["prediction"]["data"],
        outputs["upper"]["data"],
        strict=True,
    ):
        assert lo < p < hi
    only = _v2(client, {"interval": 0.8}, outputs=["upper"]).get_json()["outputs"]
    assert [o["name"] for o in only] == ["upper"]
    assert _v2(client, None, outputs=["upper"]).status_code == 400  # no interval asked for
    bad = _v2(client, {"interval": 2})
    assert bad.status_code == 400, bad.get_json()  # V2 answers every client error with 400
    assert bad.get_json()["error"].startswith("Invalid interval level: parameters.interval: ")


def test_mlflow_interval_param_answers_records(client):
    body = {"dataframe_records": [ROW, ROW], "params": {"interval": 0.95}}
    response = client.post("/mlflow/housing/invocations", json=body)
    assert response.status_code == 200, response.get_json()
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert set(row) == {"prediction", "lower", "upper"}
        assert row["lower"] < row["prediction"] < row["upper"]
    plain = client.post("/mlflow/housing/invocations", json={"dataframe_records": [ROW]})
    assert isinstance(plain.get_json()["predictions"][0], float)
    bad = client.post(
        "/mlflow/housing/invocations",
        json={"dataframe_records": [ROW], "params": {"interval": "x"}},
    )
    assert bad.status_code == 400, bad.get_json()  # as `mlflow models serve` answers
    assert bad.get_json()["error_code"] == "INVALID_PARAMETER_VALUE"
