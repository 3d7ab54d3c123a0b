"""Retrain jobs for the API: submit one (record, lock, publish) and read the records."""

from __future__ import annotations

import logging
from functools import partial

from celery import Celery
from flask import current_app, url_for

from app.errors import ApiError
from app.runtime import get_runtime
from core import jobs
from core.tasks import publish_retrain

log = logging.getLogger(__name__)


def location(job_id: str) -> str:
    """Where a client polls a job."""
    return url_for("jobs.Job", job_id=job_id)


def _celery() -> Celery:
    celery_app = current_app.extensions.get("celery")
    if celery_app is None:  # create_app did not call celery_init_app: a deployment mistake
        log.error("POST /retrain: no Celery app; create_app must call celery_init_app(app)")
        raise ApiError(503, "Retraining is not configured on this server.")
    return celery_app


def submit(model: str, force: bool, reason: str | None) -> jobs.Job:
    """Queue a retrain for the API: 409 naming the active job, 503 when Redis is down."""
    publish = partial(publish_retrain, _celery())
    try:
        return jobs.enqueue(get_runtime().database(), model, publish, force, "api", reason)
    except jobs.JobConflict as exc:
        held = location(exc.job.job_id)
        raise ApiError(
            409,
            f"A retrain of {exc.model} is already {exc.job.state} as job {exc.job.job_id}; "
            f"follow it at {held}.",
            errors={"job_id": exc.job.job_id, "state": exc.job.state, "model": exc.model},
            headers={"Location": held},
        ) from None
    except jobs.NotQueued:
        raise ApiError(
            503,
            "The job queue (Redis) is unavailable, so the retrain was not queued; retry later.",
        ) from None


def get(job_id: str) -> jobs.Job:
    """One job record; 404 for an unknown id."""
    job = jobs.get(get_runtime().database(), job_id)
    if job is None:
        raise ApiError(404, f"Unknown job id {job_id!r}.")
    return job


def recent(limit: int) -> list[jobs.Job]:
    """The newest job records first."""
    return jobs.recent(get_runtime().database(), limit)
