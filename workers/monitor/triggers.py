"""Automatic retrains: a degraded model gets one, unless it got one lately (the cool-down)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from core import jobs
from core.metrics import RETRAIN_AUTO_TRIGGERS

log = logging.getLogger(__name__)

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
        outcome, job_id = _enqueue(engine, model, trigger, reason, publish)
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


def _enqueue(
    engine: Engine, model: str, trigger: str, reason: str, publish: Publish
) -> tuple[str, str | None]:
    # force=False: feedback reaches the training data through the pipeline, so a retrain with
    # nothing new is a quick "up to date" instead of a pointless full run.
    try:
        job = jobs.enqueue(engine, model, publish, force=False, trigger=trigger, reason=reason)
    except jobs.JobConflict as exc:
        return BUSY, exc.job.job_id
    except jobs.NotQueued:
        return FAILED, None  # not queued, so not a job: the next check asks again
    return SUBMITTED, job.job_id
