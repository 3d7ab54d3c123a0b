"""Finding jobs nobody is running any more, and putting them back on track.

Redis gives an unacknowledged message back only after the visibility timeout (longer than the
task time limit), so a worker killed mid-retrain would leave its job `running` for that long.
Instead every worker reconciles at start and then every JOB_SWEEP_SECONDS: a running job whose
holder is gone (heartbeat too old, or it was held by an earlier incarnation of this very node)
is queued again, or failed with a clear error after RETRAIN_MAX_ATTEMPTS; a queued job whose
message the broker no longer holds (Redis keeps nothing on disk) is published again. Duplicate
messages are harmless: a job is claimed with a compare-and-set and runs once per attempt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from core import jobs
from core.jobs import Job
from workers import retrain_metrics
from workers.config import WorkerSettings
from workers.runtime import WorkerIdentity

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def holder_is_gone(
    job: Job, me: WorkerIdentity, stale_seconds: float, now: datetime | None = None
) -> bool:
    """True when the process recorded as running job cannot be running it any more."""
    now = now or jobs.utcnow()
    beat = job.heartbeat_at or job.started_at
    if beat is None or (now - beat).total_seconds() > stale_seconds:
        return True
    if job.worker == me.nodename:
        if beat < me.booted_at:
            return True  # held by an earlier incarnation of this node, which has died
        if job.worker_pid and not pid_alive(job.worker_pid):
            return True  # a pool process of this node died (killed, out of memory)
    return False


@dataclass
class Summary:
    """What one reconciliation did, by job id."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)


def lost_note(job: Job) -> str:
    """Why an attempt ended without an outcome, in words for the job record."""
    return (
        f"attempt {job.attempts} was lost: worker {job.worker} (pid {job.worker_pid}) stopped "
        f"during stage {job.stage or 'unknown'}"
    )


def _recover(
    engine: Engine, job: Job, ws: WorkerSettings, publish: Callable[[str], None], out: Summary
) -> None:
    note = lost_note(job)
    if job.attempts >= ws.max_attempts:
        error = f"{note}; gave up after {job.attempts} attempts"
        if jobs.fail(engine, job.job_id, error, attempt=job.attempts):
            retrain_metrics.record_failure(job.models, None)
            log.error("job %s failed: %s", job.job_id, error)
            out.failed.append(job.job_id)
        return
    if not jobs.requeue(engine, job.job_id, job.attempts, note):
        return  # someone else changed it first
    log.warning("job %s queued again: %s", job.job_id, note)
    out.requeued.append(job.job_id)
    try:
        publish(job.job_id)
    except Exception as exc:  # broker down: the queued sweep publishes it later
        log.warning("could not publish job %s again yet: %s", job.job_id, exc)


def reconcile(
    engine: Engine,
    me: WorkerIdentity,
    ws: WorkerSettings,
    publish: Callable[[str], None],
    pending: Callable[[], set[str] | None],
    now: datetime | None = None,
) -> Summary:
    """Recover orphaned running jobs and republish queued jobs whose message was lost."""
    now = now or jobs.utcnow()
    out = Summary()
    pending_ids: set[str] | None = None
    asked = False
    for job in jobs.active(engine):
        if job.state == jobs.RUNNING:
            if holder_is_gone(job, me, ws.stale_seconds, now):
                _recover(engine, job, ws, publish, out)
            continue
        if (now - job.updated_at).total_seconds() < ws.lost_after_seconds:
            continue  # just submitted or requeued: its message may still be on its way
        if not asked:
            pending_ids, asked = pending(), True
        if pending_ids is None or job.job_id in pending_ids:
            continue  # cannot tell, or the message is there
        try:
            publish(job.job_id)
        except Exception as exc:
            log.warning("could not publish lost job %s again: %s", job.job_id, exc)
            continue
        jobs.touch(engine, job.job_id)
        log.warning("job %s was queued but its message was lost; published again", job.job_id)
        out.republished.append(job.job_id)
    return out
