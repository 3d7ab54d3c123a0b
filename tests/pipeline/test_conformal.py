"""Conformal prediction intervals (core.conformal) and the probability calibration report: the
Intervals API on its own, then what the session's real pipeline run produced, gated and stored."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from core import registry
from core.conformal import (
    CONFORMAL_FILE,
    KIND_CALIBRATION,
    REPORTED_LEVELS,
    Intervals,
    level_name,
)
from core.specs import HOUSING, IRIS
from pipeline import io, params, validate

RNG = np.random.default_rng(7)


def synthetic(n: int = 2000, bins: int = 4) -> tuple[Intervals, np.ndarray, np.ndarray]:
    """Intervals fitted on heteroscedastic rows: noise grows with the prediction."""
    pred = RNG.uniform(0.5, 4.5, n)
    y = pred + RNG.normal(0, 0.1 + 0.2 * pred)
    return Intervals.fit(y, pred, folds=5, bins=bins), y, pred


# -- the Intervals API ---------------------------------------------------------------------------
def test_round_trip_through_json_bytes_str_and_dict_gives_the_same_bounds():
    intervals, _, pred = synthetic()
    doc = intervals.to_json()
    text = json.dumps(doc, sort_keys=True)
    assert doc["n"] == 2000 and doc["folds"] == 5 and len(doc["residuals"]) == 4
    assert len(doc["bin_edges"]) == 3 and "Mondrian" in doc["method"]
    lower, upper = intervals.bounds(pred, 0.9)
    for source in (doc, text, text.encode()):
        again = Intervals.from_json(source)
        assert json.dumps(again.to_json(), sort_keys=True) == text
        got_lower, got_upper = again.bounds(pred, 0.9)
        assert np.array_equal(got_lower, lower) and np.array_equal(got_upper, upper)
    assert intervals.describe() == {
        "method": intervals.method,
        "n": 2000,
        "folds": 5,
        "bins": 4,
        "min_level": intervals.min_level,
        "max_level": intervals.max_level,
        "y_min": doc["y_min"],
        "y_max": doc["y_max"],
    }


def test_standard_bounds_are_the_conformal_quantile_of_absolute_residuals_by_hand():
    residuals = np.round(RNG.normal(0, 1, 999), 6)
    intervals = Intervals([residuals], [], folds=3, y_min=-100.0, y_max=100.0)
    assert intervals.bins == 1 and "standard" in intervals.method
    largest_first = np.sort(np.abs(residuals))[::-1]
    for level in (0.5, 0.8, 0.9, 0.95):
        # ceil((n + 1) * level)-th smallest == floor((n + 1) * (1 - level))-th largest
        k = math.floor(round((1 - level) * 1000, 9))
        lower, upper = intervals.bounds(np.array([1.0, 2.0]), level)
        assert np.allclose(upper - [1.0, 2.0], largest_first[k - 1])
        assert np.allclose([1.0, 2.0] - lower, largest_first[k - 1])


def test_mondrian_bins_are_narrow_where_residuals_are_small():
    intervals, y, pred = synthetic(n=4000, bins=4)
    lower, upper = intervals.bounds(np.array([0.6, 4.4]), 0.9)
    width = upper - lower
    assert width[0] < 0.5 * width[1]
    # Coverage of the calibration rows themselves is the level, per bin and overall.
    inside = intervals.covered(pred, y, 0.9)
    assert abs(inside.mean() - 0.9) < 0.01


def test_bounds_are_clipped_to_the_training_target_range():
    intervals = Intervals([[-1.0, 0.5, 1.0, 2.0] * 50], [], folds=2, y_min=0.15, y_max=5.0)
    lower, upper = intervals.bounds(np.array([0.2, 2.5, 4.9]), 0.9)
    assert lower[0] == 0.15 and upper[2] == 5.0
    assert lower[1] < 2.5 < upper[1] and lower.min() >= 0.15 and upper.max() <= 5.0


def test_levels_outside_the_supported_range_are_value_errors_naming_it():
    intervals = Intervals([np.arange(99) / 10], [], folds=2, y_min=0.0, y_max=20.0)
    assert intervals.max_level == pytest.approx(0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # crepes' "too small calibration set" never fires
        lower, upper = intervals.bounds(np.array([10.0]), intervals.max_level)
    assert np.isfinite([lower, upper]).all() and upper[0] == pytest.approx(19.8)
    assert intervals.min_level == pytest.approx(0.01)  # 1 / (99 + 1)
    lower, upper = intervals.bounds(np.array([10.0]), intervals.min_level)
    assert upper[0] - lower[0] == pytest.approx(0.0)  # the smallest residual: 0
    too_high = math.nextafter(intervals.max_level, 1.0)
    # Levels near 0 once sent crepes' index past the end of a bin (an IndexError, a 500).
    for level in (0.0, -0.1, 1e-300, 1e-12, 0.005, too_high, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"interval level must be in \[0\.01, 0\.99\]"):
            intervals.bounds(np.array([1.0]), level)
    with pytest.raises(ValueError, match="must be a number"):
        intervals.bounds(np.array([1.0]), True)


def test_intervals_are_immutable():
    intervals, _, _ = synthetic(n=200, bins=2)
    with pytest.raises(AttributeError, match="immutable"):
        intervals._y_max = 100.0  # the point of the test
    with pytest.raises(ValueError, match="read-only"):
        intervals._residuals[0][0] = 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "not json", "not JSON"),
        (lambda d: [1, 2], "JSON object"),
        (lambda d: {**d, "kind": KIND_CALIBRATION}, "probability_calibration"),
        (lambda d: {k: v for k, v in d.items() if k != "residuals"}, "malformed"),
        (lambda d: {**d, "n": 5}, "n=5"),
        (lambda d: {**d, "residuals": [[], *d["residuals"][1:]]}, "non-empty"),
        (lambda d: {**d, "bin_edges": d["bin_edges"][:1]}, "need 2 bin edges"),
        (lambda d: {**d, "bin_edges": d["bin_edges"][::-1]}, "increasing"),
        (lambda d: {**d, "y_min": 9.0, "y_max": 1.0}, "target range"),
        (lambda d: {**d, "folds": 1}, "folds"),
        (lambda d: {**d, "residuals": [["a"], ["b"]]}, "could not convert|malformed"),
    ],
)
def test_malformed_files_are_value_errors(change, message):
    doc = Intervals.fit(np.arange(20.0), np.arange(20.0) + 0.5, folds=2, bins=3).to_json()
    with pytest.raises(ValueError, match=message):
        Intervals.from_json(change(doc))


def test_params_need_the_coverage_gate_for_regression(tmp_path):
    good = params.load(Path(__file__).parents[1] / "params.test.yaml")
    params.check(good)
    for value, message in (
        (None, "interval_levels is missing"),
        ([], "non-empty list"),
        ([0.9, 1.2], "between 0.0 and 1.0"),
    ):
        bad = json.loads(json.dumps(good))
        if value is None:
            del bad["validate"]["housing"]["interval_levels"]
        else:
            bad["validate"]["housing"]["interval_levels"] = value
        with pytest.raises(params.ParamsError, match=message):
            params.check(bad)
    bad = json.loads(json.dumps(good))
    bad["validate"]["housing"]["max_coverage_gap"] = 0.7
    with pytest.raises(params.ParamsError, match="max_coverage_gap"):
        params.check(bad)


# -- the session's real pipeline run -------------------------------------------------------------
def _holdout(ws: Path, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import joblib
    import pandas as pd

    spec = HOUSING if model == "housing" else IRIS
    frame = pd.read_csv(ws / "data" / "prepared" / model / "holdout.csv")
    x = frame[spec.feature_names].to_numpy(dtype=float)
    estimator = joblib.load(ws / "models" / model / "model.pkl")
    return x, frame["target"].to_numpy(), estimator


def test_holdout_coverage_of_the_trained_model_is_within_two_points_by_hand(trained_registry):
    ws = trained_registry.workspace
    doc = json.loads((ws / "models" / "housing" / CONFORMAL_FILE).read_text())
    train_csv = (ws / "data" / "prepared" / "housing" / "train.csv").read_text()
    train_rows = len(train_csv.splitlines()) - 1
    assert doc["n"] == train_rows and doc["folds"] == 2  # every training row, cv_folds folds
    x, y, estimator = _holdout(ws, "housing")
    pred = estimator.predict(x)
    metrics = json.loads((ws / "metrics" / "housing.json").read_text())
    edges = np.asarray(doc["bin_edges"])
    bins = np.digitize(pred, edges)
    for level in REPORTED_LEVELS:
        # By hand, without crepes: per bin, the floor((n_b + 1)(1 - level))-th largest |residual|.
        alpha = np.empty(len(doc["residuals"]))
        for b, residuals in enumerate(doc["residuals"]):
            k = math.floor(round((1 - level) * (len(residuals) + 1), 9))
            alpha[b] = np.sort(np.abs(residuals))[::-1][k - 1]
        covered = np.abs(y - pred) <= alpha[bins]
        assert abs(covered.mean() - level) <= 0.02, (level, covered.mean())
        assert metrics[f"coverage_{level_name(level)}"] == pytest.approx(covered.mean())
        assert metrics[f"interval_width_{level_name(level)}"] > 0
    report = json.loads((ws / "reports" / "housing" / "validation.json").read_text())
    gates = {c["gate"]: c for c in report["checks"]}
    for level in (0.8, 0.9, 0.95):
        gate = gates[f"coverage_{level_name(level)}"]
        assert gate["passed"] and gate["value"] == metrics[f"coverage_{level_name(level)}"]
        assert gate["limit"] == [round(level - 0.02, 6), round(level + 0.02, 6)]
    assert (ws / "plots" / "housing" / "intervals.png").stat().st_size > 10_000


def test_iris_probability_calibration_is_reported(trained_registry):
    from sklearn.metrics import brier_score_loss

    ws = trained_registry.workspace
    doc = json.loads((ws / "models" / "iris" / CONFORMAL_FILE).read_text())
    assert doc["kind"] == KIND_CALIBRATION and doc["n"] == 120 and doc["folds"] == 3
    assert 0 < doc["brier"] < 0.15
    bins = doc["reliability"]["bins"]
    assert sum(b["rows"] for b in bins) == 120
    assert all(b["bin"][0] <= b["confidence"] <= b["bin"][1] for b in bins)
    x, y, estimator = _holdout(ws, "iris")
    proba = estimator.predict_proba(x)
    onehot = (y[:, None] == estimator.classes_[None, :]).astype(float)
    by_hand = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    assert by_hand == pytest.approx(brier_score_loss(y, proba, labels=estimator.classes_))
    metrics = json.loads((ws / "metrics" / "iris.json").read_text())
    assert metrics["brier"] == pytest.approx(by_hand) and metrics["cv_brier"] == doc["brier"]
    report = json.loads((ws / "reports" / "iris" / "validation.json").read_text())
    (gate,) = [c for c in report["checks"] if c["gate"] == "max_brier"]
    assert gate["passed"] and gate["value"] == metrics["brier"] and gate["limit"] == 0.15
    assert (ws / "plots" / "iris" / "reliability.png").stat().st_size > 10_000


def test_conformal_json_is_stored_with_every_registered_version(trained_registry):
    registry.configure(trained_registry.tracking_uri)
    ws = trained_registry.workspace
    for spec in (HOUSING, IRIS):
        local = json.loads((ws / "models" / spec.name / CONFORMAL_FILE).read_text())
        assert registry.load_conformal(spec.registered_name, "1") == local
        _model, files = registry.load_model_and_files(spec.registered_name, "1")
        assert json.loads(files[CONFORMAL_FILE]) == local
    stored = Intervals.from_json(registry.load_conformal(HOUSING.registered_name, "1"))
    assert stored.n == local_n(ws)
    with pytest.raises(registry.NotFound):
        registry.load_conformal(HOUSING.registered_name, "999")
    # Coverage and Brier score flow to MLflow with the other metrics (the version's tag).
    tags = registry.get_version(HOUSING.registered_name, "1").tags
    assert {"coverage_80", "coverage_90", "coverage_95"} <= set(json.loads(tags["metrics"]))
    tags = registry.get_version(IRIS.registered_name, "1").tags
    assert {"brier", "cv_brier"} <= set(json.loads(tags["metrics"]))


def local_n(ws: Path) -> int:
    return json.loads((ws / "models" / "housing" / CONFORMAL_FILE).read_text())["n"]


@pytest.fixture
def workspace_copy(trained_registry, tmp_path, monkeypatch) -> Path:
    """A copy of the session's pipeline workspace, made the current directory."""
    ws = tmp_path / "ws"
    shutil.copytree(trained_registry.workspace, ws, ignore=shutil.ignore_patterns("tmp", "cache"))
    monkeypatch.chdir(ws)
    return ws


@pytest.mark.parametrize(("scale", "direction"), [(0.5, "below"), (2.0, "above")])
def test_validate_rejects_intervals_whose_holdout_coverage_is_off(
    workspace_copy, scale, direction, capsys
):
    path = io.model_dir("housing") / CONFORMAL_FILE
    doc = json.loads(path.read_text())
    doctored = Intervals(
        [np.asarray(r) * scale for r in doc["residuals"]],
        doc["bin_edges"],
        doc["folds"],
        doc["y_min"],
        doc["y_max"],
    )
    io.write_json(path, doctored.to_json())
    with pytest.raises(
        SystemExit, match=r"rejected by gate.*coverage_80, coverage_90, coverage_95"
    ):
        validate.main("housing")
    report = io.read_json(io.reports_dir("housing") / "validation.json")
    assert report["passed"] is False and "serving" not in report  # nothing compiled
    for check in report["checks"]:
        if check["gate"].startswith("coverage_"):
            low, high = check["limit"]
            assert not check["passed"]
            assert check["value"] < low if direction == "below" else check["value"] > high
        else:
            assert check["passed"], check
    assert "FAIL coverage_90" in capsys.readouterr().out
