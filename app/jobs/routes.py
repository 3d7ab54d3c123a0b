"""Enqueue a retrain (admin) and follow its job record.

The job row is written before the message is published, so a client can always poll the id it
got; if publishing fails the row is deleted again and the client gets a 503, never an orphan.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import current_app, url_for
from flask.views import MethodView
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.errors import ApiError
from app.jobs.schemas import JobListArgsSchema, JobListSchema, JobSchema, RetrainRequestSchema
from app.services import get_services
from core import jobs
from workers.celery_app import publish_retrain

log = logging.getLogger(__name__)

blp = Blueprint("jobs", __name__, description="Retrain jobs: enqueue, then poll.")


def _engine() -> Engine:
    engine = get_services().engine
    jobs.ensure_schema(engine)
    return engine


def _celery() -> Celery:
    celery_app = current_app.extensions.get("celery")
    if celery_app is None:  # create_app did not call celery_init_app: a deployment mistake
        log.error("POST /retrain: no Celery app; create_app must call celery_init_app(app)")
        raise ApiError(503, "Retraining is not configured on this server.")
    return celery_app


def _database_down(exc: Exception) -> ApiError:
    log.error("job database unavailable: %s", exc)
    return ApiError(503, "The job database is unavailable; retry later.")


def _conflict(exc: jobs.JobConflict) -> ApiError:
    job = exc.job
    location = url_for("jobs.Job", job_id=job.job_id)
    return ApiError(
        409,
        f"A retrain of {exc.model} is already {job.state} as job {job.job_id}; "
        f"follow it at {location}.",
        errors={"job_id": job.job_id, "state": job.state, "model": exc.model},
        headers={"Location": location},
    )


@blp.route("/retrain")
class Retrain(MethodView):
    """Start a retrain."""

    decorators = [admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.arguments(RetrainRequestSchema, example={"model": "housing", "force": False})
    @blp.response(
        202,
        JobSchema,
        description="Queued; poll the Location.",
        headers={"Location": {"description": "/jobs/<job_id>", "schema": {"type": "string"}}},
    )
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(409, response="CONFLICT", description="A retrain of the model is active.")
    @blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
    @blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Broker unavailable.")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Queue a retrain of one model or all; one per model at a time. Admin only.

        The worker runs the DVC pipeline, registers the candidate and promotes it only if it
        beats the champion; every API worker then serves it without a restart. Without
        `force`, unchanged data and params finish quickly as "up to date".
        """
        celery_app = _celery()
        try:
            engine = _engine()
            job = jobs.submit(engine, body["model"], body["force"], "api", body["reason"])
        except jobs.JobConflict as exc:
            raise _conflict(exc) from None
        except SQLAlchemyError as exc:
            raise _database_down(exc) from None
        try:
            publish_retrain(celery_app, job.job_id)
        except Exception as exc:
            # Not queued, so not a job: remove the record (and its single-flight lock).
            log.error("could not queue retrain job %s: %s", job.job_id, exc)
            try:
                jobs.discard(engine, job.job_id)
            except SQLAlchemyError:
                log.exception("could not remove unqueued job %s", job.job_id)
            raise ApiError(
                503,
                "The job queue (Redis) is unavailable, so the retrain was not queued; retry later.",
            ) from None
        log.info("queued retrain job %s for %s (force=%s)", job.job_id, job.model, job.force)
        location = url_for("jobs.Job", job_id=job.job_id)
        return job.to_dict(), 202, {"Location": location}


@blp.route("/jobs")
class Jobs(MethodView):
    """Recent jobs."""

    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Job database unavailable.")
    def get(self, args: dict[str, int]) -> dict[str, Any]:
        """The most recent retrain jobs, newest first (`limit`, default 20, at most 200)."""
        try:
            found = jobs.recent(_engine(), args["limit"])
        except SQLAlchemyError as exc:
            raise _database_down(exc) from None
        return {"jobs": [job.to_dict() for job in found]}


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Job database unavailable.")
    def get(self, job_id: str) -> dict[str, Any]:
        """State, stage, timestamps, error and per-model result of a retrain job."""
        try:
            job = jobs.get(_engine(), job_id)
        except SQLAlchemyError as exc:
            raise _database_down(exc) from None
        if job is None:
            raise ApiError(404, f"Unknown job id {job_id!r}.")
        return job.to_dict()
