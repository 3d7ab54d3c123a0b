"""Retention: prediction-log rows, their shadow scores and monitor reports older than the
retention period go."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from core import db, monitor_reports, prediction_log
from core.metrics import PREDICTION_LOG_PRUNED
from core.prediction_log import shadow
from workers.config import WorkerSettings

log = logging.getLogger(__name__)


def run(engine: Engine, ws: WorkerSettings, now: datetime | None = None) -> dict[str, Any]:
    """Prune prediction log rows, shadow rows (core.prediction_log.shadow) and monitor reports
    older than the retention; save a report.

    Feedback rows are never pruned: they are training data and keep their own copy of inputs.
    PREDICTION_LOG_RETENTION_DAYS=0 keeps everything (a zero cutoff would delete it all).
    """
    if ws.retention_days <= 0:
        log.info("retention: PREDICTION_LOG_RETENTION_DAYS is 0, nothing is deleted")
        return {"deleted": 0, "batches": 0, "shadow_deleted": 0, "cutoff": None, "seconds": 0.0}
    now = now or db.utcnow()
    cutoff = now - timedelta(days=ws.retention_days)
    started = time.monotonic()
    logged = prediction_log.prune(engine, cutoff, ws.retention_batch_rows)
    shadowed = shadow.prune(engine, cutoff, ws.retention_batch_rows)
    reports = db.prune(engine, monitor_reports.monitor_reports, cutoff, ws.retention_batch_rows)
    seconds = time.monotonic() - started
    PREDICTION_LOG_PRUNED.inc(logged.deleted)
    report = {
        "deleted": logged.deleted,
        "batches": logged.batches,
        "shadow_deleted": shadowed.deleted,
        "cutoff": cutoff.isoformat(),
        "seconds": round(seconds, 3),
    }
    log.info(
        "retention: deleted %d prediction log rows in %d batches, %d shadow rows and %d monitor "
        "reports older than %s in %.2f s",
        logged.deleted,
        logged.batches,
        shadowed.deleted,
        reports.deleted,
        report["cutoff"],
        seconds,
    )
    monitor_reports.save(engine, monitor_reports.RETENTION, monitor_reports.ANY_MODEL, report)
    return report
