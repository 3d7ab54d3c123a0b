"""Live coverage of the champion's conformal intervals: the monitor's quality check scores real
predictions of the session's housing model against their real targets (holdout rows), with the
intervals stored with the version, into model_interval_coverage and the quality report."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from core import feedback, monitor_reports, registry
from core.conformal import CONFORMAL_FILE, REPORTED_LEVELS, Intervals
from core.feedback import Label
from core.specs import HOUSING, IRIS, MODEL_SPECS
from tests.conftest import TrainedRegistry
from tests.workers.test_monitor import MONITOR_PARAMS, log_predictions, sample, write_params
from workers import config, monitor
from workers.config import WorkerSettings

ROWS = 100  # MONITOR_PARAMS' housing quality window: every labelled row is scored


@pytest.fixture
def ws(registry_copy: TrainedRegistry, tmp_path: Path) -> WorkerSettings:
    """Worker settings reading the test monitor params, on the private registry copy."""
    workspace = write_params(registry_copy, tmp_path / "workspace", MONITOR_PARAMS)
    return config.load().model_copy(update={"workspace": workspace})


def holdout(trained: TrainedRegistry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Holdout rows, the trained housing model's predictions of them, and their targets."""
    frame = pd.read_csv(trained.workspace / "data" / "prepared" / "housing" / "holdout.csv")
    x = np.ascontiguousarray(frame[HOUSING.feature_names].to_numpy(dtype=float))[:ROWS]
    model = joblib.load(trained.workspace / "models" / "housing" / "model.pkl")
    return x, model.predict(x), frame["target"].to_numpy(dtype=float)[:ROWS]


def test_live_interval_coverage_of_the_champion_from_real_labelled_rows(
    registry_copy, sqlite_engine, ws
):
    version = registry.champion(HOUSING.registered_name).version
    x, pred, actual = holdout(registry_copy)
    # Half the labels doctored far off (+3.0, clipped to the data's cap): those rows fall
    # outside every interval, so the live coverage is visibly not the holdout's.
    actual = actual.copy()
    actual[::2] = np.minimum(actual[::2] + 3.0, 5.0)
    rid = log_predictions(sqlite_engine, HOUSING, version, x, pred)
    labels = [Label(rid, i, float(a)) for i, a in enumerate(actual)]
    assert feedback.record(sqlite_engine, labels, MODEL_SPECS).stored

    monitor.check_all(sqlite_engine, ws, lambda job_id: None)

    # Expected from the workspace's own conformal.json (the same bytes the version stores).
    local = json.loads(
        (registry_copy.workspace / "models" / "housing" / CONFORMAL_FILE).read_text()
    )
    intervals = Intervals.from_json(local)
    report = monitor_reports.latest(sqlite_engine, monitor_reports.QUALITY, "housing")
    champion_entry = report["versions"][0]
    assert champion_entry["version"] == version and champion_entry["labelled"] == ROWS
    coverage = champion_entry["interval_coverage"]
    assert set(coverage) == {"0.8", "0.9", "0.95"}
    for level in REPORTED_LEVELS:
        lower, upper = intervals.bounds(pred, level)
        expected = float(np.mean((actual >= lower) & (actual <= upper)))
        assert coverage[f"{level:g}"] == pytest.approx(expected)
        labels_c = {"model": "housing", "version": version, "level": f"{level:g}"}
        assert sample("model_interval_coverage", labels_c) == pytest.approx(expected)
    # The doctored half is outside, the true half mostly inside: well under nominal.
    assert 0.3 < coverage["0.9"] <= 0.5
    assert coverage["0.8"] <= coverage["0.9"] <= coverage["0.95"]
    # Iris has no intervals: its report carries none.
    iris = monitor_reports.latest(sqlite_engine, monitor_reports.QUALITY, "iris")
    assert all("interval_coverage" not in v for v in iris["versions"])
    assert registry.load_conformal(IRIS.registered_name, "1")["kind"] != "regression_intervals"
