"""Bad params fail with a clear message before anything touches the registry."""

from __future__ import annotations

import copy

import pytest
import yaml

from core import registry
from pipeline import params, workspace
from pipeline.params import ParamsError
from pipeline.runner import run_pipeline
from tests.conftest import TEST_PARAMS


@pytest.fixture
def good() -> dict:
    return yaml.safe_load(TEST_PARAMS.read_text())


def test_project_and_test_params_are_valid(good):
    params.check(good)
    params.check(params.load(workspace.PROJECT_ROOT / "params.yaml"))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("train", "housing", "candidates"), {"xgboost_magic": {}}, "unknown algorithm"),
        (("train", "iris", "candidates"), {"ridge": {}}, "unknown algorithm 'ridge'"),
        (("train", "housing", "candidates"), {}, "at least one algorithm"),
        (("train", "housing", "cv_folds"), 1, "at least 2"),
        (("train", "housing", "cv_folds"), -3, "positive integer"),
        (("train", "iris", "max_artifact_mb"), -1, "positive number"),
        (("train", "housing", "candidates", "ridge", "alpha"), -1.0, "must not be negative"),
        (("prepare", "housing", "holdout_fraction"), 1.5, "between"),
        (("prepare", "iris", "holdout_fraction"), "a lot", "between"),
        (("validate", "iris", "min_accuracy"), 2.0, "between"),
        (("validate", "housing", "max_rmse"), -0.1, "positive number"),
        (("register", "housing", "min_improvement"), -0.5, ">= 0"),
        (("monitor", "housing", "drift_window_rows"), 0, "positive integer"),
        (("monitor", "iris", "drift_min_rows"), 2.5, "positive integer"),
        (("monitor", "housing", "quality_window_rows"), True, "positive integer"),
        (("monitor", "iris", "quality_min_rows"), -1, "positive integer"),
        (("monitor", "housing", "max_drift_psi"), 0, "positive number"),
        (("monitor", "iris", "max_drift_psi"), "high", "positive number"),
        (("monitor", "housing", "max_live_rmse"), -0.7, "positive number"),
        (("monitor", "iris", "min_live_accuracy"), 1.2, "from 0.0 to 1.0"),
        (("monitor", "iris", "min_live_accuracy"), -0.1, "from 0.0 to 1.0"),
        (("monitor", "housing", "cooldown_minutes"), -5, ">= 0"),
        (("monitor", "housing", "min_live_accuracy"), 0.9, "not a monitor setting for a regr"),
        (("monitor", "iris", "max_live_rmse"), 0.5, "not a monitor setting for a classif"),
        (("monitor", "iris", "drift_threshold"), 0.2, "not a monitor setting"),
        (("monitor", "housing", "drift_min_rows"), 6000, "must not exceed drift_window_rows"),
        (("monitor", "iris", "quality_min_rows"), 201, "must not exceed quality_window_rows"),
    ],
)
def test_bad_params_are_rejected_with_the_field_named(good, path, value, message):
    bad = copy.deepcopy(good)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=message) as info:
        params.check(bad)
    assert ".".join(path[:2]) in str(info.value) or path[0] == "train"


def test_monitor_edge_values_are_accepted(good):
    edited = copy.deepcopy(good)
    edited["monitor"]["housing"]["cooldown_minutes"] = 0  # retrain as often as triggered
    edited["monitor"]["iris"]["min_live_accuracy"] = 1.0
    edited["monitor"]["iris"]["quality_min_rows"] = edited["monitor"]["iris"]["quality_window_rows"]
    params.check(edited)
    del edited["monitor"]  # the section is optional: the monitor job has defaults
    params.check(edited)


def test_monitor_rejects_an_unknown_model(good):
    bad = copy.deepcopy(good)
    bad["monitor"]["wine"] = {"max_drift_psi": 0.2}
    with pytest.raises(ParamsError, match=r"monitor: unknown model\(s\) \['wine'\]"):
        params.check(bad)


def test_run_pipeline_refuses_bad_params_before_touching_the_registry(
    registry_copy, tmp_path, good
):
    bad = copy.deepcopy(good)
    bad["train"]["housing"]["candidates"] = {"no_such_algorithm": {}}
    params_file = tmp_path / "bad.yaml"
    params_file.write_text(yaml.safe_dump(bad))
    ws = workspace.create(tmp_path / "ws", params_file=params_file)
    before = [v.to_dict() for v in registry.list_versions("CaliforniaHousingBestModel")]
    with pytest.raises(ParamsError, match="unknown algorithm 'no_such_algorithm'"):
        run_pipeline("housing", workspace=ws)
    assert [v.to_dict() for v in registry.list_versions("CaliforniaHousingBestModel")] == before
    assert not (ws / "models").exists()  # no stage ran
