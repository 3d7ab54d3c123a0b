"""Durable retrain job records and the per-model single-flight lock, in the SQL database.

A job row is the source of truth for clients (`GET /jobs/<id>`): Celery task states are not
used, because PENDING cannot tell "queued" from "unknown" and results expire. Single-flight is
a second table keyed by model name: submitting a job inserts its row and one lock row per model
in ONE transaction, so two API workers racing for the same model cannot both win (the primary
key refuses the loser on SQLite and PostgreSQL alike). Finishing a job deletes its lock rows in
the same transaction that records the outcome.

Every state change by a worker is a compare-and-set on (state, attempts), so a redelivered
message, a reconciler and a late-finishing old attempt can never overwrite each other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from core import db
from core.db import utcnow
from core.specs import MODEL_SPECS

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED)
ALL_MODELS = "all"


retrain_jobs = Table(
    "retrain_jobs",
    db.metadata,
    Column("job_id", String(36), primary_key=True),
    Column("model", String(32), nullable=False),  # a model name or "all"
    Column("state", String(16), nullable=False),
    Column("stage", String(64)),
    Column("force", Boolean, nullable=False, default=False),
    Column("trigger", String(32), nullable=False),  # who asked: api, cli, ...
    Column("reason", Text),  # why, in the requester's words (optional)
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("result", db.JSON_TYPE),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(255)),  # Celery node name of the current/last attempt
    Column("worker_pid", Integer),  # process that runs the current attempt
    Index(None, "submitted_at"),
    Index(None, "state"),
)

# One row per model with an active (queued or running) job: the single-flight lock.
retrain_locks = Table(
    "retrain_locks",
    db.metadata,
    Column("model", String(32), primary_key=True),
    Column(
        "job_id",
        String(36),
        ForeignKey("retrain_jobs.job_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("locked_at", DateTime(timezone=True), nullable=False),
)


class NotQueued(Exception):
    """Publishing a recorded job failed; its record and locks were removed again."""

    def __init__(self, job: Job, cause: Exception) -> None:
        super().__init__(f"retrain job {job.job_id} could not be queued: {cause}")
        self.job = job


class JobConflict(Exception):
    """A retrain of one of the requested models is already queued or running."""

    def __init__(self, job: Job, model: str) -> None:
        super().__init__(f"a retrain of {model} is already {job.state} as job {job.job_id}")
        self.job = job
        self.model = model


@dataclass
class Job:
    """One retrain job as stored."""

    job_id: str
    model: str
    state: str
    force: bool
    trigger: str
    submitted_at: datetime
    updated_at: datetime
    stage: str | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    attempts: int = 0
    worker: str | None = None
    worker_pid: int | None = None

    @property
    def models(self) -> list[str]:
        """The model names this job retrains."""
        return lock_keys(self.model)

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON responses (timestamps stay datetimes for the schema)."""
        return asdict(self)


def _job(mapping: Mapping[str, Any]) -> Job:
    data = dict(mapping)
    for key in ("submitted_at", "started_at", "finished_at", "updated_at", "heartbeat_at"):
        data[key] = db.as_utc(data[key])
    return Job(**data)


def lock_keys(model: str) -> list[str]:
    """The single-flight keys a job for model holds: one per model, both for 'all'."""
    if model == ALL_MODELS:
        return list(MODEL_SPECS)
    if model in MODEL_SPECS:
        return [model]
    raise ValueError(f"unknown model {model!r}; choose from {sorted(MODEL_SPECS)} or 'all'")


def ensure_schema(engine: Engine) -> None:
    """Bring the application database's schema up to date (db.migrate, once per engine)."""
    db.ensure_schema(engine)


def _holder(conn: Connection, keys: Iterable[str]) -> tuple[Job, str] | None:
    row = conn.execute(
        select(retrain_jobs, retrain_locks.c.model.label("locked_model"))
        .join(retrain_locks, retrain_locks.c.job_id == retrain_jobs.c.job_id)
        .where(retrain_locks.c.model.in_(list(keys)))
        .limit(1)
    ).first()
    if row is None:
        return None
    data = dict(row._mapping)
    locked_model = data.pop("locked_model")
    return _job(data), locked_model


def submit(
    engine: Engine,
    model: str,
    force: bool = False,
    trigger: str = "api",
    reason: str | None = None,
) -> Job:
    """Record a queued job and take its models' single-flight locks atomically.

    Raises JobConflict naming the active job when any of the models is already taken.
    """
    keys = lock_keys(model)
    ensure_schema(engine)
    for _ in range(5):
        now = utcnow()
        job = Job(
            job_id=uuid.uuid4().hex,
            model=model,
            state=QUEUED,
            force=bool(force),
            trigger=trigger,
            reason=reason,
            submitted_at=now,
            updated_at=now,
        )
        try:
            with engine.begin() as conn:
                conn.execute(insert(retrain_jobs).values(**_columns(job)))
                conn.execute(
                    insert(retrain_locks),
                    [{"model": key, "job_id": job.job_id, "locked_at": now} for key in keys],
                )
            return job
        except IntegrityError:
            with engine.begin() as conn:
                found = _holder(conn, keys)
                if found is None:
                    continue  # the holder finished between our insert and this look-up
                holder, locked_model = found
                if holder.state in FINAL_STATES:
                    # Defensive: a lock outliving its job (should not happen, since locks are
                    # released in the transaction that finishes the job) must not block forever.
                    conn.execute(
                        delete(retrain_locks).where(retrain_locks.c.job_id == holder.job_id)
                    )
                    continue
            raise JobConflict(holder, locked_model) from None
    raise RuntimeError(f"could not record a retrain job for {model}: the lock table keeps changing")


def enqueue(
    engine: Engine,
    model: str,
    publish: Callable[[str], None],
    force: bool = False,
    trigger: str = "api",
    reason: str | None = None,
) -> Job:
    """Record a queued job with its locks, then publish it; a job that is not queued is no job.

    The record is written first, so a client can always poll the id it got. Raises JobConflict
    (nothing written) or NotQueued (publish failed: the record and its locks are removed).
    """
    job = submit(engine, model, force, trigger, reason)
    try:
        publish(job.job_id)
    except Exception as exc:
        log.error("could not queue %s retrain job %s: %s", trigger, job.job_id, exc)
        try:
            discard(engine, job.job_id)
        except Exception:  # the database went too: the reconciler republishes the record
            log.exception("could not remove unqueued job %s", job.job_id)
        raise NotQueued(job, exc) from exc
    log.info("queued %s retrain job %s for %s (force=%s)", trigger, job.job_id, model, force)
    return job


def _columns(job: Job) -> dict[str, Any]:
    return {c.name: getattr(job, c.name) for c in retrain_jobs.columns}


def get(engine: Engine, job_id: str) -> Job | None:
    """One job, or None for an unknown id."""
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(select(retrain_jobs).where(retrain_jobs.c.job_id == job_id)).first()
    return _job(row._mapping) if row is not None else None


def recent(engine: Engine, limit: int = 20) -> list[Job]:
    """The newest jobs first."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(retrain_jobs)
            .order_by(retrain_jobs.c.submitted_at.desc(), retrain_jobs.c.job_id.desc())
            .limit(limit)
        ).all()
    return [_job(r._mapping) for r in rows]


def active(engine: Engine) -> list[Job]:
    """Every queued or running job, oldest first."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(retrain_jobs)
            .where(retrain_jobs.c.state.in_(ACTIVE_STATES))
            .order_by(retrain_jobs.c.submitted_at)
        ).all()
    return [_job(r._mapping) for r in rows]


def last_triggered(
    engine: Engine, model: str, triggers: Iterable[str], since: datetime
) -> Job | None:
    """The newest job with one of triggers covering model (or "all") submitted since `since`."""
    ensure_schema(engine)
    cols = retrain_jobs.c
    with engine.connect() as conn:
        row = conn.execute(
            select(retrain_jobs)
            .where(
                cols.trigger.in_(list(triggers)),
                cols.model.in_([model, ALL_MODELS]),
                cols.submitted_at >= since,
            )
            .order_by(cols.submitted_at.desc())
            .limit(1)
        ).first()
    return _job(row._mapping) if row is not None else None


def discard(engine: Engine, job_id: str) -> bool:
    """Delete a job that was never handed to the queue (publish failed) with its locks."""
    with engine.begin() as conn:
        conn.execute(delete(retrain_locks).where(retrain_locks.c.job_id == job_id))
        gone = conn.execute(
            delete(retrain_jobs).where(
                retrain_jobs.c.job_id == job_id, retrain_jobs.c.state == QUEUED
            )
        )
    return gone.rowcount == 1


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to start a job: the claimed job, or why it must not run."""

    job: Job | None
    skipped: str | None = None


def claim(
    engine: Engine,
    job_id: str,
    worker: str,
    pid: int,
    may_take_over: Callable[[Job], bool],
) -> Claim:
    """Move a job to running for this attempt, unless it is finished or alive elsewhere.

    A queued job is claimed; a running one only when may_take_over(job) says its holder is
    gone (a redelivered message after a crash). attempts counts every claim.
    """
    ensure_schema(engine)
    current = get(engine, job_id)
    if current is None:
        return Claim(None, "unknown job")
    if current.state in FINAL_STATES:
        return Claim(None, f"already {current.state}")
    if current.state == RUNNING and not may_take_over(current):
        return Claim(None, f"already running on {current.worker} (pid {current.worker_pid})")
    now = utcnow()
    values = {
        "state": RUNNING,
        "attempts": current.attempts + 1,
        "stage": "starting",
        "started_at": now,
        "updated_at": now,
        "heartbeat_at": now,
        "worker": worker,
        "worker_pid": pid,
    }
    with engine.begin() as conn:
        done = conn.execute(
            update(retrain_jobs)
            .where(
                retrain_jobs.c.job_id == job_id,
                retrain_jobs.c.state == current.state,
                retrain_jobs.c.attempts == current.attempts,
            )
            .values(**values)
        )
    if done.rowcount != 1:
        return Claim(None, "claimed concurrently by another delivery")
    for key, value in values.items():
        setattr(current, key, value)
    return Claim(current)


def _update_attempt(job_id: str, attempt: int, **values: Any):
    """UPDATE of a job that matches only while `attempt` is its current, running attempt."""
    return (
        update(retrain_jobs)
        .where(
            retrain_jobs.c.job_id == job_id,
            retrain_jobs.c.state == RUNNING,
            retrain_jobs.c.attempts == attempt,
        )
        .values(**values)
    )


def _attempt_update(engine: Engine, job_id: str, attempt: int, **values: Any) -> bool:
    """Update the running attempt `attempt` of a job; False when it is no longer current."""
    with engine.begin() as conn:
        done = conn.execute(_update_attempt(job_id, attempt, **values))
    return done.rowcount == 1


def heartbeat(engine: Engine, job_id: str, attempt: int) -> bool:
    """Prove the attempt is alive; False when it was superseded."""
    return _attempt_update(engine, job_id, attempt, heartbeat_at=utcnow())


def set_stage(engine: Engine, job_id: str, attempt: int, stage: str) -> bool:
    """Record the stage the attempt is in (also a heartbeat)."""
    now = utcnow()
    return _attempt_update(
        engine, job_id, attempt, stage=stage[:64], heartbeat_at=now, updated_at=now
    )


def finish(
    engine: Engine,
    job_id: str,
    attempt: int,
    state: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    stage: str | None = None,
) -> bool:
    """Record the outcome of the attempt and release the job's locks, in one transaction."""
    if state not in FINAL_STATES:
        raise ValueError(f"finish() needs a final state, not {state!r}")
    now = utcnow()
    values: dict[str, Any] = {
        "state": state,
        "result": result,
        "error": error,
        "finished_at": now,
        "updated_at": now,
        "heartbeat_at": now,
    }
    if stage is not None:
        values["stage"] = stage
    with engine.begin() as conn:
        done = conn.execute(_update_attempt(job_id, attempt, **values))
        if done.rowcount != 1:
            return False
        conn.execute(delete(retrain_locks).where(retrain_locks.c.job_id == job_id))
    return True


def fail(engine: Engine, job_id: str, error: str, attempt: int | None = None) -> bool:
    """Mark an active job failed with a clear error and release its locks.

    With attempt, only that running attempt is failed (compare-and-set); without, any
    queued or running state is.
    """
    now = utcnow()
    conditions = [retrain_jobs.c.job_id == job_id, retrain_jobs.c.state.in_(ACTIVE_STATES)]
    if attempt is not None:
        conditions.append(retrain_jobs.c.attempts == attempt)
    with engine.begin() as conn:
        done = conn.execute(
            update(retrain_jobs)
            .where(*conditions)
            .values(state=FAILED, error=error, finished_at=now, updated_at=now)
        )
        if done.rowcount != 1:
            return False
        conn.execute(delete(retrain_locks).where(retrain_locks.c.job_id == job_id))
    return True


def requeue(engine: Engine, job_id: str, attempt: int, note: str) -> bool:
    """Put a running attempt whose worker is gone back to queued (locks are kept)."""
    now = utcnow()
    with engine.begin() as conn:
        done = conn.execute(
            update(retrain_jobs)
            .where(
                retrain_jobs.c.job_id == job_id,
                retrain_jobs.c.state == RUNNING,
                retrain_jobs.c.attempts == attempt,
            )
            .values(state=QUEUED, stage=None, error=note, updated_at=now)
        )
    return done.rowcount == 1


def touch(engine: Engine, job_id: str) -> None:
    """Bump updated_at of a queued job (it was just published again)."""
    with engine.begin() as conn:
        conn.execute(
            update(retrain_jobs)
            .where(retrain_jobs.c.job_id == job_id, retrain_jobs.c.state == QUEUED)
            .values(updated_at=utcnow())
        )
