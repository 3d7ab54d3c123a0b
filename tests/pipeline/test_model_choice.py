"""Model choice is a function of data, params and seed: structural serving cost, CV ranking,
fallbacks that say why, and the timing hook that proves a slow clock changes nothing."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pipeline import cost, measure, train
from tests.conftest import stage_env

X, Y = load_iris(return_X_y=True)
REG_Y = X[:, 0] * 2.0 + X[:, 3]
TRAIN_CFG = {"max_ops_per_row": 500, "max_artifact_mb": 1.0}


def test_cost_of_linear_models_is_their_coefficients():
    assert cost.ops_per_row(Ridge().fit(X, REG_Y)) == 4 + 1
    assert cost.ops_per_row(LogisticRegression(max_iter=500).fit(X, Y)) == 3 * 4 + 3


def test_cost_of_a_forest_is_the_sum_of_its_tree_depths():
    forest = RandomForestRegressor(n_estimators=7, max_depth=4, random_state=0).fit(X, REG_Y)
    depths = [tree.get_depth() for tree in forest.estimators_]
    assert cost.ops_per_row(forest) == sum(depths)
    assert 7 <= sum(depths) <= 7 * 4


def test_cost_of_hist_boosting_charges_every_tree_its_deepest_bound():
    hgb = HistGradientBoostingRegressor(max_iter=12, max_leaf_nodes=7, random_state=0)
    hgb.fit(X, REG_Y)
    assert cost.ops_per_row(hgb) == hgb.n_iter_ * 6
    capped = HistGradientBoostingRegressor(max_iter=12, max_depth=3, random_state=0)
    assert cost.ops_per_row(capped.fit(X, REG_Y)) == capped.n_iter_ * 3


def test_cost_of_a_calibrated_svc_pipeline_adds_up_its_parts():
    svc = CalibratedClassifierCV(SVC(), ensemble=False).fit(X, Y)
    inner = svc.calibrated_classifiers_[0].estimator
    expected_svc = inner.support_vectors_.size + inner.dual_coef_.size + 3 * cost.CALIBRATOR_OPS
    assert cost.ops_per_row(svc) == expected_svc
    pipe = Pipeline([("features", StandardScaler()), ("model", svc)]).fit(X, Y)
    assert cost.ops_per_row(pipe) == 4 + cost.ops_per_row(pipe.named_steps["model"])


def test_cost_refuses_what_it_cannot_price():
    with pytest.raises(TypeError, match="no serving-cost model for object"):
        cost.ops_per_row(object())


def test_measured_latency_follows_the_injected_clock_and_scale(monkeypatch):
    ticks = itertools.count()
    clock = lambda: next(ticks) * 0.001  # noqa: E731 - every reading is 1 ms after the last
    model = Ridge().fit(X, REG_Y)
    assert measure.single_row_latency_ms(model, X, repeats=5, clock=clock) == pytest.approx(1.0)
    monkeypatch.setenv(measure.TIMING_SCALE_ENV, "3")
    assert measure.single_row_latency_ms(model, X, repeats=5, clock=clock) == pytest.approx(3.0)


def _result(algo: str, cv: float, ops: int, mb: float = 0.1) -> dict:
    return {"algorithm": algo, "cv_metric": cv, "ops_per_row": ops, "artifact_mb": mb}


def test_pick_is_the_best_cv_metric_within_the_budgets():
    results = [_result("ridge", 0.66, 9), _result("hgb", 0.44, 400), _result("rf", 0.47, 300)]
    best, excluded = train.pick(results, TRAIN_CFG, greater_is_better=False)
    assert best["algorithm"] == "hgb" and excluded == []
    best, _ = train.pick(results[:1] + results[2:], TRAIN_CFG, greater_is_better=False)
    assert best["algorithm"] == "rf"


def test_pick_names_every_better_candidate_it_passed_over_and_why():
    results = [
        _result("ridge", 0.66, 9),
        _result("hgb", 0.44, 40_000),
        _result("rf", 0.47, 300, mb=8.0),
    ]
    best, excluded = train.pick(results, TRAIN_CFG, greater_is_better=False)
    assert best["algorithm"] == "ridge"
    assert [e["algorithm"] for e in excluded] == ["hgb", "rf"]
    text = train.describe(excluded)
    assert "hgb (cv 0.4400) excluded: 40000 ops per row > max_ops_per_row 500" in text
    assert "rf (cv 0.4700) excluded: 8.00 MB > max_artifact_mb 1.0" in text


def test_pick_ties_go_to_the_candidate_listed_first():
    results = [_result("a", 0.9, 10), _result("b", 0.9, 10)]
    assert train.pick(results, TRAIN_CFG, greater_is_better=True)[0]["algorithm"] == "a"
    assert train.pick(results[::-1], TRAIN_CFG, greater_is_better=True)[0]["algorithm"] == "b"


def test_pick_with_nothing_in_budget_says_which_and_why():
    with pytest.raises(SystemExit, match=r"no candidate fits the budgets: hgb .*40000 ops"):
        train.pick([_result("hgb", 0.44, 40_000)], TRAIN_CFG, greater_is_better=False)


def test_a_fallback_that_cannot_pass_validate_is_an_error_naming_the_cause():
    best = {**_result("ridge", 0.66, 9), "cv_metrics": {"rmse": 0.66, "r2": 0.66, "mae": 0.5}}
    excluded = [{"algorithm": "hgb", "cv_metric": 0.44, "why": ["40000 ops per row > 500"]}]
    gates = {"max_rmse": 0.5, "min_r2": 0.75, "max_ops_per_row": 1000, "max_artifact_mb": 20}
    with pytest.raises(SystemExit) as info:
        train.check_fallback("housing", best, excluded, gates)
    message = str(info.value)
    assert "hgb (cv 0.4400) excluded" in message and "the fallback ridge cannot pass" in message
    assert "cv rmse 0.6600 vs max_rmse 0.5" in message and "cv r2 0.6600 vs min_r2 0.75" in message
    train.check_fallback("housing", best, excluded, {**gates, "max_rmse": 0.7, "min_r2": 0.6})
    train.check_fallback("housing", best, [], gates)  # the best candidate is no fallback


def _train_stage(ws: Path, env: dict, model: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.train", model],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_stage_reports_an_excluded_candidate_and_refuses_a_hopeless_fallback(
    registry_copy, tmp_path
):
    ws = tmp_path / "ws"
    shutil.copytree(registry_copy.workspace, ws, symlinks=True)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert list(params["train"]["iris"]["candidates"]) == ["logistic_regression", "svc"]
    params["train"]["iris"]["max_ops_per_row"] = 100  # the calibrated SVC costs ~300
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    env = stage_env(registry_copy.env)

    done = _train_stage(ws, env, "iris")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train iris: svc (cv 0.9667) excluded:" in done.stdout
    assert "ops per row > max_ops_per_row 100" in done.stdout
    summary = json.loads((ws / "models" / "iris" / "train.json").read_text())
    assert summary["algorithm"] == "logistic_regression"
    assert [e["algorithm"] for e in summary["excluded"]] == ["svc"]

    params["validate"]["iris"]["min_accuracy"] = 0.99  # logistic regression's CV is 0.958
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    failed = _train_stage(ws, env, "iris")
    assert failed.returncode != 0
    assert "the fallback logistic_regression cannot pass validate" in failed.stderr
    assert "vs min_accuracy 0.99" in failed.stderr
