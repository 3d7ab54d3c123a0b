"""Marshmallow schemas of the Open Inference Protocol V2 REST payloads (OpenAPI documentation).

Loading an inference request is app/v2/tensors.parse_request (it also reads binary tensor data,
which no schema describes); the schema below documents the JSON form.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from app.v2.tensors import FP64, INPUT_DATATYPES, InferBody, InferRequest, parse_request
from app.version_cache import VERSION_PATTERN

PARAMETERS = {"description": "key/value parameters: strings, numbers or booleans"}


class V2ErrorSchema(ma.Schema):
    """Every V2 error: one descriptive string."""

    error = ma.fields.String(required=True, metadata={"example": "Model 'wine' is not served."})


class V2ServerMetadataSchema(ma.Schema):
    """GET /v2."""

    name = ma.fields.String(required=True, metadata={"example": "prediction-service"})
    version = ma.fields.String(required=True, metadata={"example": "1.0.0"})
    extensions = ma.fields.List(ma.fields.String(), required=True)


class V2LiveSchema(ma.Schema):
    """GET /v2/health/live."""

    live = ma.fields.Boolean(required=True)


class V2ReadySchema(ma.Schema):
    """GET /v2/health/ready."""

    ready = ma.fields.Boolean(required=True)


class V2ModelReadySchema(ma.Schema):
    """GET /v2/models/{name}[/versions/{version}]/ready."""

    name = ma.fields.String(required=True)
    ready = ma.fields.Boolean(required=True)


class V2MetadataTensorSchema(ma.Schema):
    """An input or output of a model: name, datatype, shape (-1: any size)."""

    name = ma.fields.String(required=True)
    datatype = ma.fields.String(required=True)
    shape = ma.fields.List(ma.fields.Integer(), required=True)
    parameters = ma.fields.Dict(metadata={"description": "e.g. the class order of probabilities"})


class V2ModelMetadataSchema(ma.Schema):
    """GET /v2/models/{name}[/versions/{version}]."""

    name = ma.fields.String(required=True)
    versions = ma.fields.List(
        ma.fields.String(), metadata={"description": "registered versions that may be pinned"}
    )
    platform = ma.fields.String(required=True, metadata={"example": "sklearn"})
    inputs = ma.fields.List(ma.fields.Nested(V2MetadataTensorSchema), required=True)
    outputs = ma.fields.List(ma.fields.Nested(V2MetadataTensorSchema), required=True)
    parameters = ma.fields.Dict(
        metadata={"description": "the version described, feature order of an [N, F] input, ..."}
    )


class V2RequestInputSchema(ma.Schema):
    """One input tensor."""

    name = ma.fields.String(required=True)
    shape = ma.fields.List(ma.fields.Integer(validate=validate.Range(min=0)), required=True)
    datatype = ma.fields.String(required=True, validate=validate.OneOf(INPUT_DATATYPES))
    parameters = ma.fields.Dict(metadata=PARAMETERS)
    data = ma.fields.List(
        ma.fields.Raw(),
        metadata={
            "description": "the elements, row-major, flat or nested as the shape; absent when "
            "parameters.binary_data_size sends them as binary data"
        },
    )


class V2RequestOutputSchema(ma.Schema):
    """An output the response should hold."""

    name = ma.fields.String(required=True)
    parameters = ma.fields.Dict(metadata=PARAMETERS)


class V2InferRequestSchema(ma.Schema):
    """POST /v2/models/{name}[/versions/{version}]/infer.

    load() is the tensor reader: it returns an InferRequest, or raises a 400.
    """

    class Meta:
        unknown = ma.EXCLUDE

    id = ma.fields.String(metadata={"description": "echoed in the response"})
    parameters = ma.fields.Dict(metadata=PARAMETERS)
    inputs = ma.fields.List(
        ma.fields.Nested(V2RequestInputSchema), required=True, validate=validate.Length(min=1)
    )
    outputs = ma.fields.List(ma.fields.Nested(V2RequestOutputSchema))

    def load(self, data: Any, **kwargs: Any) -> InferRequest:
        """Structure checks of the request (the values are validated by the model's spec)."""
        return parse_request(data if isinstance(data, InferBody) else InferBody(data))


class V2ResponseOutputSchema(ma.Schema):
    """One output tensor."""

    name = ma.fields.String(required=True)
    shape = ma.fields.List(ma.fields.Integer(), required=True)
    datatype = ma.fields.String(required=True)
    parameters = ma.fields.Dict(metadata=PARAMETERS)
    data = ma.fields.List(ma.fields.Raw())


class V2InferResponseSchema(ma.Schema):
    """The answer to an inference request."""

    model_name = ma.fields.String(required=True)
    model_version = ma.fields.String(metadata={"description": "the version that answered"})
    id = ma.fields.String()
    parameters = ma.fields.Dict(metadata=PARAMETERS)
    outputs = ma.fields.List(ma.fields.Nested(V2ResponseOutputSchema), required=True)


VERSION_PARAMETER = {
    "in": "path",
    "name": "version",
    "required": True,
    "description": "a registered version number, or champion, previous or challenger",
    "schema": {"type": "string", "pattern": VERSION_PATTERN},
}


def infer_examples(features: list[str]) -> dict[str, Any]:
    """Request examples: a housing [N, F] matrix, and one tensor per feature."""
    row = [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]
    return {
        "matrix": {
            "summary": "housing: one FP64 tensor [N, F], features in contract order",
            "value": {
                "id": "42",
                "inputs": [{"name": "input", "shape": [1, 8], "datatype": FP64, "data": row}],
            },
        },
        "per_feature": {
            "summary": "housing: one tensor per feature, named as the field",
            "value": {
                "inputs": [
                    {"name": name, "shape": [1], "datatype": FP64, "data": [value]}
                    for name, value in zip(features, row, strict=True)
                ]
            },
        },
    }
