"""Schemas of GET /predictions."""

import marshmallow as ma
from marshmallow import validate

from core.specs import MODEL_SPECS


class PredictionQuerySchema(ma.Schema):
    """Query string of GET /predictions."""

    model = ma.fields.String(validate=validate.OneOf(list(MODEL_SPECS)))
    limit = ma.fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class PredictionEntrySchema(ma.Schema):
    """One predicted row."""

    id = ma.fields.Integer()
    request_id = ma.fields.String()
    model = ma.fields.String(metadata={"example": "iris"})
    version = ma.fields.String(metadata={"example": "3"})
    row_index = ma.fields.Integer()
    inputs = ma.fields.Dict()
    output = ma.fields.Raw(metadata={"description": "number (regression) or label+probabilities"})
    latency_ms = ma.fields.Float()
    created_at = ma.fields.String(metadata={"example": "2026-01-01T12:00:00.000000Z"})


class PredictionListSchema(ma.Schema):
    """Newest entries first."""

    predictions = ma.fields.List(ma.fields.Nested(PredictionEntrySchema))
    count = ma.fields.Integer()
