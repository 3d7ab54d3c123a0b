"""Live quality of a model: its versions scored on their newest ground-truth labels, and for a
regression champion the live coverage of its conformal intervals (conformal.json of the
version) on the same rows."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from core import feedback, monitor_reports, registry
from core.conformal import REPORTED_LEVELS, Intervals
from core.metrics import (
    MODEL_INTERVAL_COVERAGE,
    MODEL_LIVE_ACCURACY,
    MODEL_LIVE_LABELLED_ROWS,
    MODEL_LIVE_MAE,
    MODEL_LIVE_RMSE,
)
from core.monitor_reports import STATUS_DEGRADED, STATUS_INSUFFICIENT_DATA, STATUS_OK
from core.registry import VersionInfo
from core.specs import ModelSpec
from workers.monitor.params import MonitorParams

log = logging.getLogger(__name__)


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
    if current is not None and spec.task == "regression" and current["labelled"]:
        current["interval_coverage"] = interval_coverage(
            engine, spec, current["version"], mp.quality_window_rows
        )
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


def interval_coverage(
    engine: Engine, spec: ModelSpec, version: str, window: int
) -> dict[str, float] | None:
    """Share of the version's newest labelled rows whose actual value lies inside its conformal
    interval, per level ("0.9": 0.91); sets the gauges. None when it has no usable intervals."""
    try:
        data = registry.load_conformal(spec.registered_name, version)
        intervals = Intervals.from_json(data) if data is not None else None
    except Exception as exc:  # live RMSE and its retrain trigger must not depend on this file
        log.warning("no intervals for %s v%s: %s: %s", spec.name, version, type(exc).__name__, exc)
        return None
    if intervals is None:
        return None
    predictions, actuals = feedback.labelled_values(engine, spec.name, version, window)
    if not len(predictions):
        return None
    coverage = {}
    for level in REPORTED_LEVELS:
        share = float(intervals.covered(predictions, actuals, level).mean())
        coverage[f"{level:g}"] = share
        MODEL_INTERVAL_COVERAGE.labels(model=spec.name, version=version, level=f"{level:g}").set(
            share
        )
    return coverage


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
