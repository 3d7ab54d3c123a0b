"""Periodic model monitoring: input drift, live quality, retraining on degradation, champion
against challenger (and the optional promotion rule), retention.

Plain functions with their dependencies passed in (database engine, settings, a publish
callable), so tests call them without Celery; workers/monitor_tasks.py wraps them as the tasks
beat schedules. One module per job: params (thresholds from params.yaml), drift, quality,
triggers (automatic retrains), comparison (champion against challenger) and retention.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.engine import Engine

from core import registry
from core.metrics import MONITOR_LAST_SUCCESS, MONITOR_RUNS, RETRAIN_AUTO_TRIGGERS
from core.monitor_reports import STATUS_DRIFT
from core.specs import MODEL_SPECS, ModelSpec
from workers.config import WorkerSettings
from workers.monitor import comparison, retention, triggers
from workers.monitor.drift import check_drift, drift_reason
from workers.monitor.params import MonitorParams, load_params
from workers.monitor.quality import check_quality

__all__ = ["CHECK", "RETENTION", "check_all", "check_model", "counted", "retention"]

log = logging.getLogger(__name__)

# Task labels of MONITOR_RUNS.
CHECK = "check"
RETENTION = "retention"


class MonitorError(RuntimeError):
    """The check failed for at least one model (the others were still checked)."""


def check_model(
    engine: Engine, spec: ModelSpec, mp: MonitorParams, publish: triggers.Publish
) -> dict[str, Any]:
    """Drift and live quality of one model; asks for a retrain when either degraded. Then
    champion against challenger (comparison settings given): gauges, and with `promote` on,
    the challenger promoted or rejected on its verdict."""
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
    if mp.comparison is not None:
        # After drift and quality: a promotion moves @champion, which they must not see half-way.
        compared = comparison.check_comparison(engine, spec, mp.comparison, champion)
        summary["comparison"] = {
            key: compared[key] for key in ("verdict", "reason", "rows_compared", "action")
        }
    if drift_report["status"] == STATUS_DRIFT:
        trigger, reason = triggers.TRIGGER_DRIFT, drift_reason(drift_report)
    elif quality_report["reason"]:
        trigger, reason = triggers.TRIGGER_PERFORMANCE, quality_report["reason"]
    else:
        return summary
    outcome, job_id = triggers.request_retrain(
        engine, spec.name, trigger, reason, mp.cooldown_minutes, publish
    )
    summary["retrain"] = {"trigger": trigger, "outcome": outcome, "job_id": job_id}
    return summary


def check_all(
    engine: Engine, ws: WorkerSettings, publish: triggers.Publish
) -> dict[str, dict[str, Any]]:
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
    comparison.initialise_metrics(models)
    for model in models:
        for trigger in triggers.AUTO_TRIGGERS:
            for outcome in triggers.OUTCOMES:
                RETRAIN_AUTO_TRIGGERS.labels(model=model, trigger=trigger, outcome=outcome)
