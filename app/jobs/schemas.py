"""Schemas of the retrain and job endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow.validate import Length, OneOf, Range

from app.fields import JsonBoolean, StorableText
from core.jobs import ALL_MODELS, STATES
from core.specs import MODEL_SPECS

MODEL_CHOICES = [*MODEL_SPECS, ALL_MODELS]


class RetrainRequestSchema(ma.Schema):
    """Body of POST /retrain."""

    model = ma.fields.String(
        required=True,
        validate=OneOf(MODEL_CHOICES),
        metadata={"description": "a model name, or all", "example": "housing"},
    )
    # Only JSON booleans: neither "false" nor 1 may silently mean something.
    force = JsonBoolean(
        load_default=False,
        metadata={"description": "retrain even when data and params are unchanged"},
    )
    reason = StorableText(
        load_default=None,
        allow_none=True,
        validate=Length(max=500),
        metadata={"description": "why, for the job record (optional)"},
    )


class JobSchema(ma.Schema):
    """A retrain job as recorded in the database."""

    job_id = ma.fields.String(metadata={"example": "3f2a9c0e6b7d4e1f8a5b2c3d4e5f6a7b"})
    model = ma.fields.String(metadata={"example": "housing"})
    state = ma.fields.String(metadata={"enum": list(STATES), "example": "running"})
    stage = ma.fields.String(allow_none=True, metadata={"example": "train@housing"})
    force = ma.fields.Boolean()
    trigger = ma.fields.String(metadata={"example": "api"})
    reason = ma.fields.String(allow_none=True)
    submitted_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    heartbeat_at = ma.fields.DateTime(allow_none=True)
    attempts = ma.fields.Integer(metadata={"description": "runs started, redeliveries included"})
    worker = ma.fields.String(allow_none=True, metadata={"example": "celery@worker-1"})
    error = ma.fields.String(allow_none=True)
    result = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": "per model: candidate_version, promoted, reason, metrics, "
            "champion_metrics, champion_version, up_to_date"
        },
    )


class JobListArgsSchema(ma.Schema):
    """Query of GET /jobs."""

    limit = ma.fields.Integer(load_default=20, validate=Range(min=1, max=200))


class JobListSchema(ma.Schema):
    """GET /jobs: the newest jobs first."""

    jobs = ma.fields.List(ma.fields.Nested(JobSchema))
