"""The periodic monitor's plain functions against a real SQLite app database and a private copy
of the session's MLflow registry: drift checks, live quality, automatic retrains, retention.

Publishing is the one seam replaced (a list collects the job ids); everything else is real.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from core import drift, feedback, jobs, monitor_reports, prediction_log, registry
from core.feedback import Label, prediction_feedback
from core.monitor_reports import monitor_reports as reports_table
from core.prediction_log import PredictionLogWriter
from core.specs import ALIAS_CHAMPION, HOUSING, IRIS, MODEL_SPECS, ModelSpec
from core.tasks import MONITOR_CHECK_TASK, RETENTION_TASK, RETRAIN_TASK
from tests.conftest import TrainedRegistry
from workers import celery_app, config, monitor
from workers.config import WorkerSettings

DRIFT_KEYS = {
    "version",
    "status",
    "overall_psi",
    "threshold",
    "window_rows",
    "min_rows",
    "features",
    "worst_feature",
}
MONITOR_PARAMS = {
    "housing": {
        "drift_window_rows": 1000,
        "drift_min_rows": 200,
        "max_drift_psi": 0.25,
        "quality_window_rows": 100,
        "quality_min_rows": 20,
        "max_live_rmse": 0.7,
        "cooldown_minutes": 60,
    },
    "iris": {
        "drift_window_rows": 500,
        "drift_min_rows": 50,
        "max_drift_psi": 0.25,
        "quality_window_rows": 100,
        "quality_min_rows": 5,
        "min_live_accuracy": 0.85,
        "cooldown_minutes": 60,
    },
}


# -- helpers shared with test_monitor_processes.py -----------------------------------------------
def training_rows(trained: TrainedRegistry, spec: ModelSpec) -> np.ndarray:
    """The session pipeline's training rows of a model (features in spec order)."""
    frame = pd.read_csv(trained.workspace / "data" / "prepared" / spec.name / "train.csv")
    # C order, like the validated batches the API hands to the prediction log writer.
    return np.ascontiguousarray(frame[spec.feature_names].to_numpy(dtype=float))


def new_champion(spec: ModelSpec, artifacts: Path, reference: dict[str, Any] | None) -> str:
    """Register a new version whose run holds `reference` (or none) and make it champion.

    Its run lives in a new experiment with its own artifact folder, so the session registry's
    shared artifacts are never written to.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment(
        f"monitor-test-{uuid.uuid4().hex[:8]}", artifact_location=artifacts.as_uri()
    )
    run_id = client.create_run(experiment).info.run_id
    if reference is not None:
        client.log_dict(run_id, reference, registry.DRIFT_REFERENCE_ARTIFACT)
    client.set_terminated(run_id)
    source = registry.champion(spec.registered_name).source
    version = client.create_model_version(spec.registered_name, source, run_id=run_id).version
    client.set_registered_model_alias(spec.registered_name, ALIAS_CHAMPION, str(version))
    return str(version)


def write_params(trained: TrainedRegistry, dest: Path, monitor_params: dict[str, Any]) -> Path:
    """A workspace folder whose params.yaml is the session's with this monitor section."""
    params = yaml.safe_load((trained.workspace / "params.yaml").read_text())
    params["monitor"] = monitor_params
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


def log_predictions(
    engine: Engine, spec: ModelSpec, version: str, x: np.ndarray, outputs: np.ndarray
) -> str:
    """Write rows to the prediction log with the API's writer; returns the request id."""
    request_id = uuid.uuid4().hex
    writer = PredictionLogWriter(engine, MODEL_SPECS.values())
    writer.record(request_id, spec.name, version, x, outputs, latency_ms=1.0)
    assert writer.flush() == len(x)
    return request_id


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def reference(trained_registry: TrainedRegistry) -> dict[str, Any]:
    """The housing drift reference of the session's training data."""
    return drift.build_reference(training_rows(trained_registry, HOUSING), HOUSING.feature_names)


@pytest.fixture
def ws(registry_copy: TrainedRegistry, tmp_path: Path) -> WorkerSettings:
    """Worker settings reading the test monitor params, on the private registry copy."""
    workspace = write_params(registry_copy, tmp_path / "workspace", MONITOR_PARAMS)
    return config.load().model_copy(update={"workspace": workspace})


@pytest.fixture
def published() -> list[str]:
    """Job ids the monitor published (the seam that replaces the broker)."""
    return []


def sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def triggers(model: str, trigger: str, outcome: str) -> float:
    labels = {"model": model, "trigger": trigger, "outcome": outcome}
    return sample("retrain_auto_triggers_total", labels) or 0.0


def shifted(trained: TrainedRegistry, rows: int) -> np.ndarray:
    """Training rows with MedInc tripled: a clear income shift."""
    x = training_rows(trained, HOUSING)[:rows].copy()
    x[:, HOUSING.feature_names.index("MedInc")] *= 3
    return x


# -- drift ---------------------------------------------------------------------------------------
def test_drift_above_the_threshold_submits_one_drift_retrain_then_cools_down(
    registry_copy, sqlite_engine, ws, reference, published, tmp_path
):
    version = new_champion(HOUSING, tmp_path / "artifacts", reference)
    x = shifted(registry_copy, 600)
    log_predictions(sqlite_engine, HOUSING, version, x, np.full(len(x), 2.0))
    submitted_before = triggers("housing", "drift", "submitted")

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    report = monitor_reports.latest(sqlite_engine, monitor_reports.DRIFT, "housing")
    assert set(report) - {"created_at"} == DRIFT_KEYS
    assert report["status"] == "drift" and report["version"] == version
    assert report["window_rows"] == 600 and report["min_rows"] == 200
    assert report["threshold"] == 0.25
    assert set(report["features"]) == set(HOUSING.feature_names)
    assert report["worst_feature"] == "MedInc"
    assert report["overall_psi"] == max(report["features"].values()) > 0.25
    # The same PSI as core.drift computes by hand on the logged rows.
    assert report["features"] == pytest.approx(drift.feature_psi(reference, x))
    psi = sample("model_feature_drift_psi", {"model": "housing", "feature": "MedInc"})
    assert psi == pytest.approx(report["features"]["MedInc"])
    assert sample("model_drift_score", {"model": "housing"}) == pytest.approx(report["overall_psi"])
    assert sample("model_drift_window_rows", {"model": "housing"}) == 600

    retrain = summary["housing"]["retrain"]
    assert retrain["trigger"] == "drift" and retrain["outcome"] == "submitted"
    job = jobs.get(sqlite_engine, retrain["job_id"])
    assert job.trigger == "drift" and job.model == "housing" and job.state == "queued"
    assert job.force is False
    assert job.reason.startswith("overall PSI ") and "> 0.25 (worst feature MedInc)" in job.reason
    assert published == [job.job_id]
    assert triggers("housing", "drift", "submitted") == submitted_before + 1
    # Iris has no logged rows: no verdict, no retrain.
    assert summary["iris"]["drift"] in ("insufficient_data", "no_reference")
    assert summary["iris"]["retrain"] is None

    # The job finishes; a check within the cool-down asks for nothing new.
    started = jobs.claim(sqlite_engine, job.job_id, "w", 1, lambda _: False).job
    assert jobs.finish(sqlite_engine, job.job_id, started.attempts, jobs.SUCCEEDED)
    cooldown_before = triggers("housing", "drift", "cooldown")
    again = monitor.check_all(sqlite_engine, ws, published.append)
    assert again["housing"]["retrain"] == {
        "trigger": "drift",
        "outcome": "cooldown",
        "job_id": job.job_id,
    }
    assert [j.job_id for j in jobs.recent(sqlite_engine)] == [job.job_id]
    assert published == [job.job_id]
    assert triggers("housing", "drift", "cooldown") == cooldown_before + 1


def test_an_active_retrain_makes_the_drift_trigger_busy(
    registry_copy, sqlite_engine, ws, reference, published, tmp_path
):
    version = new_champion(HOUSING, tmp_path / "artifacts", reference)
    x = shifted(registry_copy, 300)
    log_predictions(sqlite_engine, HOUSING, version, x, np.full(len(x), 2.0))
    manual = jobs.submit(sqlite_engine, "all", trigger="api", reason="operator")

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    assert summary["housing"]["retrain"]["outcome"] == "busy"
    assert summary["housing"]["retrain"]["job_id"] == manual.job_id
    assert [j.job_id for j in jobs.recent(sqlite_engine)] == [manual.job_id]
    assert published == []


def test_a_failed_publish_discards_the_job_and_the_next_check_asks_again(
    registry_copy, sqlite_engine, ws, reference, tmp_path
):
    version = new_champion(HOUSING, tmp_path / "artifacts", reference)
    x = shifted(registry_copy, 300)
    log_predictions(sqlite_engine, HOUSING, version, x, np.full(len(x), 2.0))

    def broker_down(job_id: str) -> None:
        raise ConnectionError("redis is down")

    summary = monitor.check_all(sqlite_engine, ws, broker_down)

    assert summary["housing"]["retrain"] == {
        "trigger": "drift",
        "outcome": "failed",
        "job_id": None,
    }
    assert jobs.recent(sqlite_engine) == []  # no record and no lock left behind
    published: list[str] = []
    summary = monitor.check_all(sqlite_engine, ws, published.append)
    assert summary["housing"]["retrain"]["outcome"] == "submitted"
    assert published == [summary["housing"]["retrain"]["job_id"]]


def test_too_few_logged_rows_give_no_verdict(
    registry_copy, sqlite_engine, ws, reference, published, tmp_path
):
    version = new_champion(HOUSING, tmp_path / "artifacts", reference)
    x = shifted(registry_copy, 150)  # drifted, but fewer than drift_min_rows (200)
    log_predictions(sqlite_engine, HOUSING, version, x, np.full(len(x), 2.0))

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    report = monitor_reports.latest(sqlite_engine, monitor_reports.DRIFT, "housing")
    assert report["status"] == "insufficient_data"
    assert report["window_rows"] == 150 and report["overall_psi"] is None
    assert report["features"] == {} and report["worst_feature"] is None
    assert math.isnan(sample("model_drift_score", {"model": "housing"}))
    assert summary["housing"]["retrain"] is None and jobs.recent(sqlite_engine) == []


def test_a_version_without_a_reference_reports_no_reference(
    registry_copy, sqlite_engine, ws, published, tmp_path
):
    version = new_champion(HOUSING, tmp_path / "artifacts", reference=None)
    x = shifted(registry_copy, 300)
    log_predictions(sqlite_engine, HOUSING, version, x, np.full(len(x), 2.0))

    monitor.check_all(sqlite_engine, ws, published.append)

    report = monitor_reports.latest(sqlite_engine, monitor_reports.DRIFT, "housing")
    assert report["status"] == "no_reference" and report["version"] == version
    assert report["window_rows"] == 300 and report["overall_psi"] is None
    assert jobs.recent(sqlite_engine) == [] and published == []


# -- live quality --------------------------------------------------------------------------------
def test_live_quality_equals_a_hand_computation_and_triggers_a_performance_retrain(
    registry_copy, sqlite_engine, ws, published
):
    housing_v = registry.champion(HOUSING.registered_name).version
    iris_v = registry.champion(IRIS.registered_name).version
    # Housing: 30 rows predicted 2.0, labelled 1.0 and 3.5 in turn (errors +1.0 and -1.5).
    x = training_rows(registry_copy, HOUSING)[:30]
    rid = log_predictions(sqlite_engine, HOUSING, housing_v, x, np.full(30, 2.0))
    actual = [1.0 if i % 2 == 0 else 3.5 for i in range(30)]
    labels = [Label(rid, i, a) for i, a in enumerate(actual)]
    assert feedback.record(sqlite_engine, labels, MODEL_SPECS).stored
    # Iris: 10 rows predicted setosa (class 0), 7 labelled setosa and 3 versicolor.
    xi = np.tile([[5.1, 3.5, 1.4, 0.2]], (10, 1))
    outputs = np.tile([[1.0, 0.0, 0.0, 0.0]], (10, 1))
    rid = log_predictions(sqlite_engine, IRIS, iris_v, xi, outputs)
    truth = ["setosa"] * 7 + ["versicolor"] * 3
    labels = [Label(rid, i, t) for i, t in enumerate(truth)]
    assert feedback.record(sqlite_engine, labels, MODEL_SPECS).stored

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    errors = np.asarray([2.0 - a for a in actual])
    rmse, mae = float(np.sqrt(np.mean(errors**2))), float(np.mean(np.abs(errors)))
    assert (rmse, mae) == pytest.approx((math.sqrt(1.625), 1.25))
    report = monitor_reports.latest(sqlite_engine, monitor_reports.QUALITY, "housing")
    assert report["status"] == "degraded" and report["champion_version"] == housing_v
    assert report["threshold"] == {"max_live_rmse": 0.7}
    (scored,) = report["versions"]
    assert scored["version"] == housing_v and scored["labelled"] == 30
    assert scored["metrics"] == pytest.approx({"rmse": rmse, "mae": mae})
    labels_h = {"model": "housing", "version": housing_v}
    assert sample("model_live_rmse", labels_h) == pytest.approx(rmse)
    assert sample("model_live_mae", labels_h) == pytest.approx(mae)
    assert sample("model_live_labelled_rows", labels_h) == 30

    iris_report = monitor_reports.latest(sqlite_engine, monitor_reports.QUALITY, "iris")
    assert iris_report["versions"][0]["metrics"] == {"accuracy": pytest.approx(0.7)}
    assert sample("model_live_accuracy", {"model": "iris", "version": iris_v}) == pytest.approx(0.7)
    assert iris_report["status"] == "degraded"

    # Too few rows for a drift verdict, so live quality is what asks for the retrains.
    for model, words in (("housing", f"live RMSE {rmse:.3f} > 0.7"), ("iris", "live accuracy")):
        retrain = summary[model]["retrain"]
        assert retrain["trigger"] == "performance" and retrain["outcome"] == "submitted"
        job = jobs.get(sqlite_engine, retrain["job_id"])
        assert job.trigger == "performance" and job.reason.startswith(words), job.reason
    assert len(published) == 2


def test_too_few_labels_do_not_trigger(registry_copy, sqlite_engine, ws, published):
    version = registry.champion(HOUSING.registered_name).version
    x = training_rows(registry_copy, HOUSING)[:10]
    rid = log_predictions(sqlite_engine, HOUSING, version, x, np.full(10, 2.0))
    labels = [Label(rid, i, 4.9) for i in range(10)]  # terrible, but only 10 < 20 labels
    assert feedback.record(sqlite_engine, labels, MODEL_SPECS).stored

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    report = monitor_reports.latest(sqlite_engine, monitor_reports.QUALITY, "housing")
    assert report["status"] == "insufficient_data" and report["versions"][0]["labelled"] == 10
    assert summary["housing"]["retrain"] is None and published == []


# -- retention -----------------------------------------------------------------------------------
def test_retention_deletes_only_old_rows_in_bounded_batches_and_keeps_feedback(sqlite_engine):
    now = jobs.utcnow()
    old, new = now - timedelta(days=40), now - timedelta(days=1)
    row = {"model": "iris", "version": "1", "output": {"label": "setosa"}, "latency_ms": 1.0}
    inputs = dict(zip(IRIS.feature_names, [5.1, 3.5, 1.4, 0.2], strict=True))
    # Old and new rows interleaved by id: 6 old, 1 new, 6 old, 2 new.
    ages = [old] * 6 + [new] + [old] * 6 + [new] * 2
    rows = [
        {**row, "request_id": f"r{i}", "row_index": 0, "inputs": inputs, "created_at": at}
        for i, at in enumerate(ages)
    ]
    with sqlite_engine.begin() as conn:
        conn.execute(insert(prediction_log.prediction_log), rows)
        conn.execute(
            insert(reports_table),
            [
                {"kind": "drift", "model": "iris", "created_at": old, "payload": {"n": 1}},
                {"kind": "drift", "model": "iris", "created_at": new, "payload": {"n": 2}},
            ],
        )
    # Labels of two old predictions: training data, kept with their own copy of the inputs.
    labels = [Label("r0", 0, "setosa"), Label("r1", 0, "versicolor")]
    assert feedback.record(sqlite_engine, labels, MODEL_SPECS).stored
    pruned_before = sample("prediction_log_pruned_rows_total", {}) or 0.0
    ws = config.load().model_copy(update={"retention_days": 30, "retention_batch_rows": 5})

    result = monitor.retention.run(sqlite_engine, ws, now=now)

    assert result["deleted"] == 12 and result["batches"] == 3  # 5 + 5 + 2
    assert result["cutoff"] == (now - timedelta(days=30)).isoformat()
    report = monitor_reports.latest(sqlite_engine, monitor_reports.RETENTION, "*")
    assert {k: report[k] for k in ("deleted", "batches", "cutoff")} == {
        k: result[k] for k in ("deleted", "batches", "cutoff")
    }
    assert report["seconds"] >= 0
    assert sample("prediction_log_pruned_rows_total", {}) == pruned_before + 12
    with sqlite_engine.connect() as conn:
        left = conn.execute(select(prediction_log.prediction_log.c.request_id)).scalars().all()
        kept_reports = conn.execute(select(reports_table.c.payload)).scalars().all()
        labelled = conn.execute(select(func.count()).select_from(prediction_feedback)).scalar()
    assert sorted(left) == ["r13", "r14", "r6"]
    assert {"n": 1} not in kept_reports and {"n": 2} in kept_reports
    assert labelled == 2
    assert feedback.quality(sqlite_engine, IRIS, "1")["labelled"] == 2

    again = monitor.retention.run(sqlite_engine, ws, now=now)
    assert (again["deleted"], again["batches"]) == (0, 0)
    # 0 days keeps everything instead of deleting it all.
    kept = monitor.retention.run(sqlite_engine, ws.model_copy(update={"retention_days": 0}))
    assert kept["deleted"] == 0
    with sqlite_engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(prediction_log.prediction_log)).scalar()
            == 3
        )


# -- wiring --------------------------------------------------------------------------------------
def test_monitor_tasks_have_their_queue_limits_and_schedule(monkeypatch):
    monkeypatch.setenv("MONITOR_INTERVAL_SECONDS", "120")
    monkeypatch.setenv("RETENTION_INTERVAL_SECONDS", "900")
    monkeypatch.setenv("MONITOR_TIME_LIMIT", "200")
    settings = celery_app.monitor_config(config.load())
    schedule = settings["beat_schedule"]
    assert schedule[MONITOR_CHECK_TASK]["schedule"] == 120
    assert schedule[MONITOR_CHECK_TASK]["options"] == {"expires": 120}
    assert schedule[RETENTION_TASK]["schedule"] == 900
    assert schedule[RETENTION_TASK]["options"] == {"expires": 900}
    for name in (MONITOR_CHECK_TASK, RETENTION_TASK):
        assert settings["task_routes"][name] == {"queue": "monitoring"}
        assert settings["task_annotations"][name] == {"time_limit": 200, "soft_time_limit": 170}
    assert RETRAIN_TASK not in settings["task_routes"]  # stays on the retrain queue
