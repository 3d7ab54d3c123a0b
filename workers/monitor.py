"""Periodic model monitoring: input drift, live quality, retraining on degradation, retention.

Plain functions with their dependencies passed in (database engine, settings, a publish
callable), so tests call them without Celery; workers/monitor_tasks.py wraps them as the tasks
beat schedules. Thresholds come from the `monitor:` section of the pipeline workspace's
params.yaml, read on every run, so a change applies without a restart (like retrain params).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.engine import Engine

from core import drift, feedback, jobs, monitor_reports, prediction_log, registry
from core.metrics import (
    MODEL_DRIFT_SCORE,
    MODEL_DRIFT_WINDOW_ROWS,
    MODEL_FEATURE_DRIFT_PSI,
    MODEL_LIVE_ACCURACY,
    MODEL_LIVE_LABELLED_ROWS,
    MODEL_LIVE_MAE,
    MODEL_LIVE_RMSE,
    MONITOR_LAST_SUCCESS,
    MONITOR_RUNS,
    PREDICTION_LOG_PRUNED,
    RETRAIN_AUTO_TRIGGERS,
)
from core.registry import VersionInfo
from core.specs import MODEL_SPECS, ModelSpec
from workers.config import WorkerSettings

log = logging.getLogger(__name__)

# Task labels of MONITOR_RUNS.
CHECK = "check"
RETENTION = "retention"

# Drift statuses (the API serves them) and live-quality statuses.
OK = "ok"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"
NO_REFERENCE = "no_reference"
DEGRADED = "degraded"

# Job triggers of automatic retrains, and what became of a request for one.
TRIGGER_DRIFT = "drift"
TRIGGER_PERFORMANCE = "performance"
AUTO_TRIGGERS = (TRIGGER_DRIFT, TRIGGER_PERFORMANCE)
SUBMITTED = "submitted"
COOLDOWN = "cooldown"
BUSY = "busy"
FAILED = "failed"
OUTCOMES = (SUBMITTED, COOLDOWN, BUSY, FAILED)

Publish = Callable[[str], None]


class MonitorError(RuntimeError):
    """The check failed for at least one model (the others were still checked)."""


@dataclass(frozen=True)
class MonitorParams:
    """One model's `monitor:` settings; a key missing from params.yaml keeps its default."""

    drift_window_rows: int = 5000
    drift_min_rows: int = 500
    max_drift_psi: float = 0.25
    quality_window_rows: int = 500
    quality_min_rows: int = 50
    cooldown_minutes: float = 360.0
    max_live_rmse: float | None = None  # regression; None: live quality never triggers
    min_live_accuracy: float | None = None  # classification


def load_params(workspace: Path) -> dict[str, MonitorParams]:
    """Every model's monitor settings from the workspace's params.yaml, checked first."""
    from pipeline import params  # worker side only; the check rejects unknown keys

    raw = params.load(Path(workspace) / params.PARAMS_FILE)
    params.check(raw)
    section = raw.get("monitor") or {}
    return {name: MonitorParams(**(section.get(name) or {})) for name in MODEL_SPECS}


# Drift references by (registered name, version, run id): a version's reference never changes,
# and the run id keeps two registries that both have a "version 2" apart.
_references: dict[tuple[str, str, str | None], dict[str, Any]] = {}


def drift_reference(champion: VersionInfo) -> dict[str, Any] | None:
    """The training-data reference of a version (cached once found), None when it has none."""
    key = (champion.registered_name, champion.version, champion.run_id)
    found = _references.get(key)
    if found is None:
        found = registry.load_drift_reference(champion.registered_name, champion.version)
        if found is not None:
            for stale in [k for k in _references if k[0] == key[0]]:
                del _references[stale]  # only the current champion's is needed
            _references[key] = found
    return found


def check_drift(
    engine: Engine, spec: ModelSpec, mp: MonitorParams, champion: VersionInfo | None
) -> dict[str, Any]:
    """Compare recent logged inputs with the champion's training data; save a DRIFT report."""
    x = prediction_log.recent_inputs(engine, spec, mp.drift_window_rows)
    report: dict[str, Any] = {
        "version": champion.version if champion else None,
        "status": OK,
        "overall_psi": None,
        "threshold": mp.max_drift_psi,
        "window_rows": len(x),
        "min_rows": mp.drift_min_rows,
        "features": {},
        "worst_feature": None,
    }
    reference = drift_reference(champion) if champion else None
    if reference is None:
        report["status"] = NO_REFERENCE
    elif len(x) < mp.drift_min_rows:
        report["status"] = INSUFFICIENT_DATA
    else:
        names = spec.feature_names
        columns = [names.index(name) for name in reference["features"]]
        scores = drift.feature_psi(reference, x[:, columns])
        overall = drift.overall_score(scores)
        report.update(
            status=DRIFT if overall > mp.max_drift_psi else OK,
            overall_psi=overall,
            features=scores,
            worst_feature=max(scores, key=scores.__getitem__),
        )
    _set_drift_gauges(spec, report)
    monitor_reports.save(engine, monitor_reports.DRIFT, spec.name, report)
    return report


def _set_drift_gauges(spec: ModelSpec, report: dict[str, Any]) -> None:
    MODEL_DRIFT_WINDOW_ROWS.labels(model=spec.name).set(report["window_rows"])
    # Without a verdict the scores are NaN, so a drift alert does not keep firing on a stale one.
    overall = report["overall_psi"]
    MODEL_DRIFT_SCORE.labels(model=spec.name).set(math.nan if overall is None else overall)
    for name in spec.feature_names:
        value = report["features"].get(name, math.nan)
        MODEL_FEATURE_DRIFT_PSI.labels(model=spec.name, feature=name).set(value)


def drift_reason(report: dict[str, Any]) -> str:
    """A drift report's verdict in words, for the retrain job's reason."""
    return (
        f"overall PSI {report['overall_psi']:.2f} > {report['threshold']:g} "
        f"(worst feature {report['worst_feature']})"
    )


def performance_problem(
    spec: ModelSpec, mp: MonitorParams, quality: dict[str, Any] | None
) -> str | None:
    """Why a version's live quality calls for a retrain, or None (fine, or too few labels)."""
    if quality is None or quality["labelled"] < mp.quality_min_rows:
        return None
    where = f"over its newest {quality['labelled']} labelled predictions (v{quality['version']})"
    metrics = quality["metrics"]
    if spec.task == "regression":
        rmse, limit = metrics["rmse"], mp.max_live_rmse
        if limit is not None and rmse > limit:
            return f"live RMSE {rmse:.3f} > {limit:g} {where}"
        return None
    accuracy, floor = metrics["accuracy"], mp.min_live_accuracy
    if floor is not None and accuracy < floor:
        return f"live accuracy {accuracy:.3f} < {floor:g} {where}"
    return None


def check_quality(
    engine: Engine, spec: ModelSpec, mp: MonitorParams, champion: VersionInfo | None
) -> dict[str, Any]:
    """Score the champion and every labelled version on their newest labels; save a report."""
    versions = feedback.versions(engine, spec.name)
    if champion is not None:
        versions = [champion.version, *(v for v in versions if v != champion.version)]
    scored = [feedback.quality(engine, spec, v, mp.quality_window_rows) for v in versions]
    for quality in scored:
        _set_quality_gauges(spec, quality)
    current = scored[0] if champion is not None else None
    problem = performance_problem(spec, mp, current)
    if current is None or current["labelled"] < mp.quality_min_rows:
        status = INSUFFICIENT_DATA
    else:
        status = DEGRADED if problem else OK
    threshold = (
        {"max_live_rmse": mp.max_live_rmse}
        if spec.task == "regression"
        else {"min_live_accuracy": mp.min_live_accuracy}
    )
    report = {
        "champion_version": champion.version if champion else None,
        "status": status,
        "reason": problem,
        "window_rows": mp.quality_window_rows,
        "min_rows": mp.quality_min_rows,
        "threshold": threshold,
        "versions": [_jsonable(q) for q in scored],
    }
    monitor_reports.save(engine, monitor_reports.QUALITY, spec.name, report)
    return report


def _set_quality_gauges(spec: ModelSpec, quality: dict[str, Any]) -> None:
    if quality["labelled"] == 0:
        return
    labels = {"model": spec.name, "version": quality["version"]}
    MODEL_LIVE_LABELLED_ROWS.labels(**labels).set(quality["labelled"])
    metrics = quality["metrics"]
    if spec.task == "regression":
        MODEL_LIVE_RMSE.labels(**labels).set(metrics["rmse"])
        MODEL_LIVE_MAE.labels(**labels).set(metrics["mae"])
    else:
        MODEL_LIVE_ACCURACY.labels(**labels).set(metrics["accuracy"])


def _jsonable(quality: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in quality.items()}


def request_retrain(
    engine: Engine,
    model: str,
    trigger: str,
    reason: str,
    cooldown_minutes: float,
    publish: Publish,
    now: datetime | None = None,
) -> tuple[str, str | None]:
    """Queue an automatic retrain unless one was asked for lately; (outcome, job id)."""
    now = now or jobs.utcnow()
    since = now - timedelta(minutes=cooldown_minutes)
    earlier = jobs.last_triggered(engine, model, AUTO_TRIGGERS, since)
    if earlier is not None:
        # Even a failed or no-op retrain counts: the data has not changed since, so asking
        # again every few minutes would only repeat it.
        outcome, job_id = COOLDOWN, earlier.job_id
    else:
        outcome, job_id = _submit(engine, model, trigger, reason, publish)
    RETRAIN_AUTO_TRIGGERS.labels(model=model, trigger=trigger, outcome=outcome).inc()
    log.log(
        logging.WARNING if outcome == SUBMITTED else logging.INFO,
        "%s retrain of %s: %s (job %s): %s",
        trigger,
        model,
        outcome,
        job_id,
        reason,
    )
    return outcome, job_id


def _submit(
    engine: Engine, model: str, trigger: str, reason: str, publish: Publish
) -> tuple[str, str | None]:
    # force=False: feedback reaches the training data through the pipeline, so a retrain with
    # nothing new is a quick "up to date" instead of a pointless full run.
    try:
        job = jobs.submit(engine, model, force=False, trigger=trigger, reason=reason)
    except jobs.JobConflict as exc:
        return BUSY, exc.job.job_id
    try:
        publish(job.job_id)
    except Exception as exc:
        # Not queued, so not a job (as the API does): the next check asks again.
        log.error("could not queue %s retrain job %s: %s", trigger, job.job_id, exc)
        try:
            jobs.discard(engine, job.job_id)
        except Exception:
            log.exception("could not remove unqueued job %s", job.job_id)
        return FAILED, None
    return SUBMITTED, job.job_id


def check_model(
    engine: Engine, spec: ModelSpec, mp: MonitorParams, publish: Publish
) -> dict[str, Any]:
    """Drift and live quality of one model; asks for a retrain when either degraded."""
    champion = registry.champion(spec.registered_name)
    drift_report = check_drift(engine, spec, mp, champion)
    quality_report = check_quality(engine, spec, mp, champion)
    summary: dict[str, Any] = {
        "version": champion.version if champion else None,
        "drift": drift_report["status"],
        "overall_psi": drift_report["overall_psi"],
        "quality": quality_report["status"],
        "retrain": None,
    }
    if drift_report["status"] == DRIFT:
        trigger, reason = TRIGGER_DRIFT, drift_reason(drift_report)
    elif quality_report["reason"]:
        trigger, reason = TRIGGER_PERFORMANCE, quality_report["reason"]
    else:
        return summary
    outcome, job_id = request_retrain(
        engine, spec.name, trigger, reason, mp.cooldown_minutes, publish
    )
    summary["retrain"] = {"trigger": trigger, "outcome": outcome, "job_id": job_id}
    return summary


def check_all(engine: Engine, ws: WorkerSettings, publish: Publish) -> dict[str, dict[str, Any]]:
    """Check every model; one model's failure does not stop the others (MonitorError after)."""
    settings = load_params(ws.workspace)
    summaries: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name, spec in MODEL_SPECS.items():
        try:
            summaries[name] = check_model(engine, spec, settings[name], publish)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            log.exception("monitor check of %s failed", name)
            failures[name] = f"{type(exc).__name__}: {exc}"
    log.info("monitor check: %s", summaries)
    if failures:
        raise MonitorError(f"monitor check failed for {failures}")
    return summaries


def retention(engine: Engine, ws: WorkerSettings, now: datetime | None = None) -> dict[str, Any]:
    """Prune prediction log rows and monitor reports older than the retention; save a report.

    Feedback rows are never pruned: they are training data and keep their own copy of inputs.
    PREDICTION_LOG_RETENTION_DAYS=0 keeps everything (a zero cutoff would delete it all).
    """
    if ws.retention_days <= 0:
        log.info("retention: PREDICTION_LOG_RETENTION_DAYS is 0, nothing is deleted")
        return {"deleted": 0, "batches": 0, "cutoff": None, "seconds": 0.0}
    now = now or jobs.utcnow()
    cutoff = now - timedelta(days=ws.retention_days)
    started = time.monotonic()
    logged = prediction_log.prune(engine, cutoff, ws.retention_batch_rows)
    reports = prediction_log.prune(
        engine, cutoff, ws.retention_batch_rows, table=monitor_reports.monitor_reports
    )
    seconds = time.monotonic() - started
    PREDICTION_LOG_PRUNED.inc(logged.deleted)
    report = {
        "deleted": logged.deleted,
        "batches": logged.batches,
        "cutoff": cutoff.isoformat(),
        "seconds": round(seconds, 3),
    }
    log.info(
        "retention: deleted %d prediction log rows in %d batches and %d monitor reports "
        "older than %s in %.2f s",
        logged.deleted,
        logged.batches,
        reports.deleted,
        report["cutoff"],
        seconds,
    )
    monitor_reports.save(engine, monitor_reports.RETENTION, monitor_reports.ANY_MODEL, report)
    return report


@contextlib.contextmanager
def counted(task: str) -> Iterator[None]:
    """Count one run of a periodic task by outcome; a success also records its time."""
    try:
        yield
    except BaseException:
        MONITOR_RUNS.labels(task=task, outcome="failure").inc()
        raise
    MONITOR_RUNS.labels(task=task, outcome="success").inc()
    MONITOR_LAST_SUCCESS.labels(task=task).set(time.time())


def initialise_metrics(models: Iterable[str] = MODEL_SPECS) -> None:
    """Export the monitor's counters at 0 from the start, so increase() sees their first run."""
    for task in (CHECK, RETENTION):
        for outcome in ("success", "failure"):
            MONITOR_RUNS.labels(task=task, outcome=outcome)
    for model in models:
        for trigger in AUTO_TRIGGERS:
            for outcome in OUTCOMES:
                RETRAIN_AUTO_TRIGGERS.labels(model=model, trigger=trigger, outcome=outcome)
