"""Marshmallow schemas of the prediction payloads, generated from core.specs.

The OpenAPI document describes a request as one of the model's record and batch schemas, and a
response as one of its single and batch prediction schemas (register_components). Loading a
request is the column-wise validator (app/predict/validation.py): a 10,000-row batch costs no
per-row schema objects.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import marshmallow as ma
from apispec import APISpec
from flask import current_app
from marshmallow import validate

from app.predict.validation import InputValidator, ParsedInput
from core.specs import ALIAS_CHAMPION, HOUSING, IRIS, MODEL_SPECS, ModelSpec

EXAMPLE_REQUEST_ID = "4f1c2a9e0b7d4c55"
REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the client's request id, or a generated one",
        "schema": {"type": "string"},
    }
}


class ModelRefSchema(ma.Schema):
    """Which model version computed a response."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    version = ma.fields.String(metadata={"example": "3"})
    alias = ma.fields.String(metadata={"example": ALIAS_CHAMPION})


class StrictFloat(ma.fields.Float):
    """A JSON number only: strings such as "1.5" and booleans are not coerced."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def title(spec: ModelSpec) -> str:
    """The prefix of a model's schema names in the OpenAPI components (e.g. "Housing")."""
    return spec.name.capitalize()


@cache
def record_schema(spec: ModelSpec) -> type[ma.Schema]:
    """The one-record schema of spec: every feature a required, finite, bounded number."""
    fields = {
        f.name: StrictFloat(
            required=True,
            allow_nan=False,
            validate=validate.Range(min=f.minimum, max=f.maximum),
            metadata={"description": f.description, "example": f.example},
        )
        for f in spec.features
    }
    return ma.Schema.from_dict(fields, name=f"{title(spec)}Record")


def _batch_schema(spec: ModelSpec, max_rows: int) -> type[ma.Schema]:
    instances = ma.fields.List(
        ma.fields.Nested(record_schema(spec)),
        required=True,
        validate=validate.Length(min=1, max=max_rows),
    )
    return ma.Schema.from_dict({"instances": instances}, name=f"{title(spec)}Batch")


class PredictionRequestSchema(ma.Schema):
    """Body of POST /predict/<model>: one record, or {"instances": [records]}.

    load() is the model's column-wise validator and returns a ParsedInput (422 on errors); the
    document describes the body as one of the record and batch schemas, so it has no fields.
    """

    spec: ClassVar[ModelSpec]

    class Meta:
        unknown = ma.EXCLUDE  # no additionalProperties: the oneOf says what is allowed

    def load(self, data: Any, **kwargs: Any) -> ParsedInput:
        """Validate a request body against the model's spec."""
        return _validator(self.spec).parse(data, current_app.config["MAX_BATCH_ROWS"])


class HousingRequestSchema(PredictionRequestSchema):
    """Body of POST /predict/housing."""

    spec = HOUSING


class IrisRequestSchema(PredictionRequestSchema):
    """Body of POST /predict/iris."""

    spec = IRIS


REQUEST_SCHEMAS: dict[str, type[PredictionRequestSchema]] = {
    schema.spec.name: schema for schema in (HousingRequestSchema, IrisRequestSchema)
}


@cache
def _validator(spec: ModelSpec) -> InputValidator:
    return InputValidator(spec)


def _response_schemas(spec: ModelSpec) -> dict[str, type[ma.Schema]]:
    common = {
        "model": ma.fields.Nested(ModelRefSchema),
        "request_id": ma.fields.String(metadata={"example": EXAMPLE_REQUEST_ID}),
    }
    if spec.task == "regression":
        unit = ma.fields.String(metadata={"example": spec.unit})
        interval = ma.Schema.from_dict(
            {"lower": ma.fields.Float(), "upper": ma.fields.Float(), "level": ma.fields.Float()},
            name=f"{title(spec)}Interval",
        )
        single: dict[str, Any] = {
            "prediction": ma.fields.Float(),
            "unit": unit,
            "interval": ma.fields.Nested(interval, metadata={"description": "with ?interval="}),
        }
        batch: dict[str, Any] = {
            "predictions": ma.fields.List(ma.fields.Float()),
            "unit": unit,
            "intervals": ma.fields.List(
                ma.fields.Nested(interval), metadata={"description": "with ?interval="}
            ),
        }
    else:
        probabilities = ma.fields.Dict(
            keys=ma.fields.String(validate=validate.OneOf(spec.classes)),
            values=ma.fields.Float(),
            metadata={"description": "probability of each class"},
        )
        row = ma.Schema.from_dict(
            {"label": ma.fields.String(), "probabilities": probabilities},
            name=f"{title(spec)}RowPrediction",
        )
        single = {"prediction": ma.fields.String(), "probabilities": probabilities}
        batch = {"predictions": ma.fields.List(ma.fields.Nested(row))}
    return {
        f"{title(spec)}Prediction": ma.Schema.from_dict({**single, **common}),
        f"{title(spec)}BatchPrediction": ma.Schema.from_dict({**batch, **common}),
    }


def _one_of(*names: str) -> dict[str, Any]:
    return {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in names]}


def register_components(spec: APISpec, max_rows: int) -> None:
    """Add every model's request and response schemas to the OpenAPI components."""
    spec.components.schema("ModelRef", schema=ModelRefSchema)
    for model_spec in MODEL_SPECS.values():
        name = title(model_spec)
        spec.components.schema(f"{name}Record", schema=record_schema(model_spec))
        spec.components.schema(f"{name}Batch", schema=_batch_schema(model_spec, max_rows))
        spec.components.schema(
            f"{name}Request",
            _one_of(f"{name}Record", f"{name}Batch"),
            schema=REQUEST_SCHEMAS[model_spec.name],
        )
        for component, schema in _response_schemas(model_spec).items():
            spec.components.schema(component, schema=schema)
        spec.components.schema(
            response_component(model_spec),
            _one_of(f"{name}Prediction", f"{name}BatchPrediction"),
        )


def response_component(spec: ModelSpec) -> str:
    """The name of the component documenting a model's 200 response."""
    return f"{title(spec)}Response"


def request_examples(spec: ModelSpec) -> dict[str, Any]:
    """Request examples of POST /predict/<model>: one record, and a batch of two."""
    row = spec.example_row()
    return {
        "single": {"summary": "one record", "value": row},
        "batch": {"summary": "a batch", "value": {"instances": [row, row]}},
    }


def response_examples(spec: ModelSpec) -> dict[str, Any]:
    """200 response examples of POST /predict/<model>, matching request_examples()."""
    ref = {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "version": "3",
        "alias": ALIAS_CHAMPION,
    }
    common = {"model": ref, "request_id": EXAMPLE_REQUEST_ID}
    if spec.task == "regression":
        single = {
            "prediction": 4.41,
            "unit": spec.unit,
            "interval": {"lower": 3.87, "upper": 4.98, "level": 0.9},
        }
        batch = {"predictions": [4.41, 3.12], "unit": spec.unit}
    else:
        probabilities = {spec.classes[0]: 0.98, spec.classes[1]: 0.02, spec.classes[2]: 0.0}
        single = {"prediction": spec.classes[0], "probabilities": probabilities}
        batch = {"predictions": [{"label": spec.classes[0], "probabilities": probabilities}] * 2}
    return {"single": {"value": {**single, **common}}, "batch": {"value": {**batch, **common}}}


def operation_text(spec: ModelSpec) -> dict[str, str]:
    """Summary and description of POST /predict/<model>."""
    return {
        "summary": f"Predict with the {spec.name} champion ({spec.registered_name}@champion)",
        "description": (
            f'Send one record, or a batch as `{{"instances": [records]}}`. '
            f"Fields: {', '.join(spec.feature_names)}. Unknown or missing fields, non-numbers, "
            "NaN/Infinity and physically impossible values are rejected with 422 naming the "
            "field (and, in a batch, the row index). The response names the model version "
            "that computed it."
        ),
    }
