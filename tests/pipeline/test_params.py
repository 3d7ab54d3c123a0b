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
