"""Marshmallow schemas of prediction payloads, generated from core.specs.

They document the API (OpenAPI components and examples) and describe the single-record shape;
request validation itself is column-wise in app/predict/validation.py for speed.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from apispec import APISpec
from marshmallow import validate

from core.specs import MODEL_SPECS, ModelSpec


class ModelRefSchema(ma.Schema):
    """Which model version computed a response."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    version = ma.fields.String(metadata={"example": "3"})
    alias = ma.fields.String(metadata={"example": "champion"})


class StrictFloat(ma.fields.Float):
    """A JSON number only: strings such as "1.5" and booleans are not coerced."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _title(spec: ModelSpec) -> str:
    return spec.name.capitalize()


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
    return ma.Schema.from_dict(fields, name=f"{_title(spec)}Record")


def _batch_schema(spec: ModelSpec, record: type[ma.Schema], max_rows: int) -> type[ma.Schema]:
    return ma.Schema.from_dict(
        {
            "instances": ma.fields.List(
                ma.fields.Nested(record),
                required=True,
                validate=validate.Length(min=1, max=max_rows),
            )
        },
        name=f"{_title(spec)}Batch",
    )


def _response_schemas(spec: ModelSpec) -> dict[str, type[ma.Schema]]:
    common = {
        "model": ma.fields.Nested(ModelRefSchema),
        "request_id": ma.fields.String(metadata={"example": "4f1c2a9e0b7d4c55"}),
    }
    if spec.task == "regression":
        unit = ma.fields.String(metadata={"example": spec.unit})
        return {
            f"{_title(spec)}Prediction": ma.Schema.from_dict(
                {"prediction": ma.fields.Float(), "unit": unit, **common}
            ),
            f"{_title(spec)}BatchPrediction": ma.Schema.from_dict(
                {"predictions": ma.fields.List(ma.fields.Float()), "unit": unit, **common}
            ),
        }
    probabilities = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.OneOf(spec.classes)),
        values=ma.fields.Float(),
        metadata={"description": "probability of each class"},
    )
    row = ma.Schema.from_dict(
        {"label": ma.fields.String(), "probabilities": probabilities},
        name=f"{_title(spec)}RowPrediction",
    )
    return {
        f"{_title(spec)}Prediction": ma.Schema.from_dict(
            {"prediction": ma.fields.String(), "probabilities": probabilities, **common}
        ),
        f"{_title(spec)}BatchPrediction": ma.Schema.from_dict(
            {"predictions": ma.fields.List(ma.fields.Nested(row)), **common}
        ),
    }


def register_components(spec: APISpec, max_rows: int) -> None:
    """Add every model's request and response schemas to the OpenAPI components."""
    spec.components.schema("ModelRef", schema=ModelRefSchema)
    for model_spec in MODEL_SPECS.values():
        record = record_schema(model_spec)
        spec.components.schema(f"{_title(model_spec)}Record", schema=record)
        spec.components.schema(
            f"{_title(model_spec)}Batch", schema=_batch_schema(model_spec, record, max_rows)
        )
        for name, schema in _response_schemas(model_spec).items():
            spec.components.schema(name, schema=schema)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _example_response(spec: ModelSpec, batch: bool) -> dict[str, Any]:
    ref = {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "version": "3",
        "alias": "champion",
    }
    if spec.task == "regression":
        key, values = ("predictions", [4.41, 3.12]) if batch else ("prediction", 4.41)
        return {key: values, "unit": spec.unit, "model": ref, "request_id": "4f1c2a9e0b7d4c55"}
    probabilities = {spec.classes[0]: 0.98, spec.classes[1]: 0.02, spec.classes[2]: 0.0}
    if batch:
        rows = [{"label": spec.classes[0], "probabilities": probabilities}] * 2
        return {"predictions": rows, "model": ref, "request_id": "4f1c2a9e0b7d4c55"}
    return {
        "prediction": spec.classes[0],
        "probabilities": probabilities,
        "model": ref,
        "request_id": "4f1c2a9e0b7d4c55",
    }


def operation_doc(spec: ModelSpec) -> dict[str, Any]:
    """requestBody and 200 response documentation (with examples) of POST /predict/<model>."""
    title = _title(spec)
    row = spec.example_row()
    return {
        "summary": f"Predict with the {spec.name} champion ({spec.registered_name}@champion)",
        "description": (
            f'Send one record, or a batch as `{{"instances": [records]}}`. '
            f"Fields: {', '.join(spec.feature_names)}. Unknown or missing fields, non-numbers, "
            "NaN/Infinity and physically impossible values are rejected with 422 naming the "
            "field (and, in a batch, the row index). The response names the model version "
            "that computed it."
        ),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_ref(f"{title}Record"), _ref(f"{title}Batch")]},
                    "examples": {
                        "single": {"summary": "one record", "value": row},
                        "batch": {"summary": "a batch", "value": {"instances": [row, row]}},
                    },
                }
            },
        },
        "responses": {
            200: {
                "description": "Predictions and the model version that computed them.",
                "headers": {
                    "X-Request-ID": {
                        "description": "the client's request id, or a generated one",
                        "schema": {"type": "string"},
                    }
                },
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [_ref(f"{title}Prediction"), _ref(f"{title}BatchPrediction")]
                        },
                        "examples": {
                            "single": {"value": _example_response(spec, batch=False)},
                            "batch": {"value": _example_response(spec, batch=True)},
                        },
                    }
                },
            }
        },
    }
