"""POST /retrain (admin), GET /jobs and GET /jobs/<id>: enqueue a retrain, then poll it."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.jobs import service
from app.jobs.schemas import JobListArgsSchema, JobListSchema, JobSchema, RetrainRequestSchema

blp = Blueprint("jobs", __name__, description="Retrain jobs: enqueue, then poll.")


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
        job = service.submit(body["model"], body["force"], body["reason"])
        return job.to_dict(), 202, {"Location": service.location(job.job_id)}


@blp.route("/jobs")
class Jobs(MethodView):
    """Recent jobs."""

    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Job database unavailable.")
    def get(self, args: dict[str, int]) -> dict[str, Any]:
        """The most recent retrain jobs, newest first (`limit`, default 20, at most 200)."""
        return {"jobs": [job.to_dict() for job in service.recent(args["limit"])]}


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    """One job."""

    @blp.response(200, JobSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Job database unavailable.")
    def get(self, job_id: str) -> dict[str, Any]:
        """State, stage, timestamps, error and per-model result of a retrain job."""
        return service.get(job_id).to_dict()
