"""Input drift of a model: recent logged inputs against its champion's training reference."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.engine import Engine

from core import drift, monitor_reports, prediction_log, registry
from core.metrics import MODEL_DRIFT_SCORE, MODEL_DRIFT_WINDOW_ROWS, MODEL_FEATURE_DRIFT_PSI
from core.monitor_reports import (
    STATUS_DRIFT,
    STATUS_INSUFFICIENT_DATA,
    STATUS_NO_REFERENCE,
    STATUS_OK,
)
from core.registry import VersionInfo
from core.specs import ModelSpec
from workers.monitor.params import MonitorParams

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
        "status": STATUS_OK,
        "overall_psi": None,
        "threshold": mp.max_drift_psi,
        "window_rows": len(x),
        "min_rows": mp.drift_min_rows,
        "features": {},
        "worst_feature": None,
    }
    reference = drift_reference(champion) if champion else None
    if reference is None:
        report["status"] = STATUS_NO_REFERENCE
    elif len(x) < mp.drift_min_rows:
        report["status"] = STATUS_INSUFFICIENT_DATA
    else:
        names = spec.feature_names
        columns = [names.index(name) for name in reference["features"]]
        scores = drift.feature_psi(reference, x[:, columns])
        overall = drift.overall_score(scores)
        report.update(
            status=STATUS_DRIFT if overall > mp.max_drift_psi else STATUS_OK,
            overall_psi=overall,
            features=scores,
            worst_feature=max(scores, key=scores.__getitem__),
        )
    _set_gauges(spec, report)
    monitor_reports.save(engine, monitor_reports.DRIFT, spec.name, report)
    return report


def _set_gauges(spec: ModelSpec, report: dict[str, Any]) -> None:
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
