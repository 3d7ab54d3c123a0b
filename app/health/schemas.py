"""Schemas of the health endpoints (documentation)."""

import marshmallow as ma


class HealthSchema(ma.Schema):
    """Overall status and the checks behind it."""

    status = ma.fields.String(metadata={"example": "ok", "description": "ok or degraded"})
    checks = ma.fields.Dict(metadata={"description": "models, prediction_log, process"})


class LiveSchema(ma.Schema):
    """The process answers."""

    status = ma.fields.String(metadata={"example": "alive"})


class ReadySchema(ma.Schema):
    """Every model is loaded and warmed."""

    status = ma.fields.String(metadata={"example": "ready"})
    models = ma.fields.Dict(metadata={"description": "served version per model"})
