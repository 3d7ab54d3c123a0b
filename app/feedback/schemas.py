"""Schemas of POST /feedback: one label, or a batch of labels, for logged predictions."""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma
from marshmallow import validate

from app.fields import StorableText, storable
from app.request_log import REQUEST_ID_PATTERN
from core.feedback import Label

MAX_LABEL_TEXT = 100  # longest class name accepted; real ones are short
MAX_ROW_INDEX = 2**31 - 1  # the column is a 32-bit integer
# OpenAPI type of a label or prediction: a number (regression) or a class label.
NUMBER_OR_LABEL = [{"type": "number"}, {"type": "string"}]


class StrictInteger(ma.fields.Integer):
    """A JSON integer only: 1.0, "1" and booleans are not coerced."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class ActualValue(ma.fields.Raw):
    """A finite number or a short string; whether it fits the model is checked after lookup."""

    default_error_messages = {
        "invalid": "Must be a number (housing, 100k USD) or a class label string (iris).",
        "not_finite": "Must be a finite number (NaN and Infinity are not labels).",
        "too_long": f"A class label has at most {MAX_LABEL_TEXT} characters.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            if not value or len(value) > MAX_LABEL_TEXT:
                raise self.make_error("too_long" if value else "invalid")
            if not storable(value):  # it is echoed in errors and logs
                raise self.make_error("invalid")
            return value
        # bool is an int subclass: true must not become the label 1.0.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an integer literal beyond float range
            finite = False
        if not finite:
            raise self.make_error("not_finite")
        return value


def _label_fields(required: bool) -> dict[str, ma.fields.Field]:
    return {
        # It is a database query parameter: lone surrogates and NULs must be a 422, not a 500.
        "request_id": StorableText(
            required=required,
            # Only ids the API hands out (or accepts from X-Request-ID) can name a prediction.
            validate=[
                validate.Length(min=1, max=128),
                validate.Regexp(f"^{REQUEST_ID_PATTERN}$", error="Not a request id."),
            ],
            metadata={
                "description": "request_id of the prediction response (or its X-Request-ID)",
                "example": "4f1c2a9e0b7d4c55",
            },
        ),
        "row_index": StrictInteger(
            validate=validate.Range(min=0, max=MAX_ROW_INDEX),
            metadata={
                "description": "position of the row in a batch prediction (default 0)",
                "example": 0,
            },
        ),
        "actual": ActualValue(
            required=required,
            metadata={
                "description": "the true value: a number in 100k USD for housing, "
                "a class label for iris",
                "oneOf": NUMBER_OR_LABEL,
                "example": 4.2,
            },
        ),
    }


LabelSchema = ma.Schema.from_dict(_label_fields(required=True), name="FeedbackLabel")


class FeedbackRequestSchema(ma.Schema.from_dict(_label_fields(required=False))):
    """Body of POST /feedback: one label, or `{"labels": [label, ...]}`."""

    labels = ma.fields.List(
        ma.fields.Nested(LabelSchema),
        validate=validate.Length(min=1),
        metadata={"description": "a batch of labels (1 to MAX_BATCH_ROWS)"},
    )

    @ma.validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        single = sorted(key for key in ("request_id", "row_index", "actual") if key in data)
        if "labels" in data:
            if single:
                message = 'Send one label or {"labels": [...]}, not both.'
                raise ma.ValidationError({key: [message] for key in single})
            return
        missing = [key for key in ("request_id", "actual") if key not in data]
        if missing:
            raise ma.ValidationError({key: ["Missing data for required field."] for key in missing})

    @ma.post_load
    def _to_labels(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        items = data.get("labels", [data])
        labels = [
            Label(item["request_id"], item.get("row_index", 0), item["actual"]) for item in items
        ]
        return {"single": "labels" not in data, "labels": labels}


class StoredLabelSchema(ma.Schema):
    """A label as stored, with the prediction it belongs to."""

    request_id = ma.fields.String(metadata={"example": "4f1c2a9e0b7d4c55"})
    row_index = ma.fields.Integer(metadata={"example": 0})
    model = ma.fields.String(metadata={"example": "housing"})
    version = ma.fields.String(metadata={"example": "3"})
    prediction = ma.fields.Raw(
        metadata={
            "description": "what the model answered: a number or a class label",
            "oneOf": NUMBER_OR_LABEL,
            "example": 4.41,
        }
    )
    actual = ma.fields.Raw(metadata={"oneOf": NUMBER_OR_LABEL, "example": 4.2})


class FeedbackResultSchema(ma.Schema):
    """Response of POST /feedback."""

    accepted = ma.fields.Integer(metadata={"description": "labels stored now", "example": 1})
    duplicates = ma.fields.Integer(
        metadata={"description": "labels already stored with the same value", "example": 0}
    )
    labels = ma.fields.List(
        ma.fields.Nested(StoredLabelSchema),
        metadata={"description": "every label of the request (accepted or duplicate), in order"},
    )


_LABEL_JSON_SCHEMA = {
    "type": "object",
    "required": ["request_id", "actual"],
    "additionalProperties": False,
    "properties": {
        "request_id": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
        "row_index": {"type": "integer", "minimum": 0, "maximum": MAX_ROW_INDEX},
        "actual": {
            "oneOf": [
                {"type": "number"},
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_LABEL_TEXT,
                    "pattern": StorableText.PATTERN,
                },
            ]
        },
    },
}
# The documented body: exactly one of the two forms. marshmallow's generated schema cannot say
# "one form or the other", and a document that lets `{}` through misleads clients and fuzzers.
REQUEST_BODY_JSON_SCHEMA = {
    "oneOf": [
        _LABEL_JSON_SCHEMA,
        {
            "type": "object",
            "required": ["labels"],
            "additionalProperties": False,
            "properties": {"labels": {"type": "array", "minItems": 1, "items": _LABEL_JSON_SCHEMA}},
        },
    ]
}
