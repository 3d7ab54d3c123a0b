"""Live quality of a model: its versions scored on their newest ground-truth labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from core import feedback, monitor_reports
from core.metrics import (
    MODEL_LIVE_ACCURACY,
    MODEL_LIVE_LABELLED_ROWS,
    MODEL_LIVE_MAE,
    MODEL_LIVE_RMSE,
)
from core.monitor_reports import STATUS_DEGRADED, STATUS_INSUFFICIENT_DATA, STATUS_OK
from core.registry import VersionInfo
from core.specs import ModelSpec
from workers.monitor.params import MonitorParams


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
        _set_gauges(spec, quality)
    current = scored[0] if champion is not None else None
    problem = performance_problem(spec, mp, current)
    if current is None or current["labelled"] < mp.quality_min_rows:
        status = STATUS_INSUFFICIENT_DATA
    else:
        status = STATUS_DEGRADED if problem else STATUS_OK
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


def _set_gauges(spec: ModelSpec, quality: dict[str, Any]) -> None:
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
