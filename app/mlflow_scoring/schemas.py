"""OpenAPI documentation of MLflow's scoring protocol (bodies read by formats.py)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.mlflow_scoring.formats import (
    CONTENT_TYPE_CSV,
    CONTENT_TYPE_JSON,
    DF_RECORDS,
    DF_SPLIT,
    INPUTS,
    INSTANCES,
    PARAMS,
)
from app.mlflow_scoring.service import MODEL_NAME_HEADER, MODEL_VERSION_HEADER


class MlflowErrorSchema(ma.Schema):
    """MLflow's error body."""

    error_code = ma.fields.String(required=True, metadata={"example": "BAD_REQUEST"})
    message = ma.fields.String(required=True)


class MlflowPredictionsSchema(ma.Schema):
    """The predictions: housing values, or iris labels, one per row."""

    predictions = ma.fields.List(ma.fields.Raw(), required=True)


_RECORDS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": {"type": "number"}},
    "description": "records keyed by field",
}
_COLUMNS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "number"}},
    "description": "columns: each field with its list of values",
}
_RECORD: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "number"},
    "description": "one record",
}
_SPLIT: dict[str, Any] = {
    "type": "object",
    "required": ["columns", "data"],
    "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "index": {"type": "array", "items": {}},
    },
}


def _variant(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: schema, PARAMS: {"type": "object", "description": "ignored"}},
    }


def request_body() -> dict[str, Any]:
    """The requestBody of POST .../invocations: four JSON forms, or CSV with a header row."""
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    examples = {
        "dataframe_split": {
            "summary": "iris: dataframe_split",
            "value": {DF_SPLIT: {"columns": list(row), "data": [list(row.values())]}},
        },
        "dataframe_records": {"summary": "iris: dataframe_records", "value": {DF_RECORDS: [row]}},
        "instances": {"summary": "iris: instances", "value": {INSTANCES: [row]}},
        "inputs": {
            "summary": "iris: inputs as columns",
            "value": {INPUTS: {name: [value] for name, value in row.items()}},
        },
    }
    return {
        "required": True,
        "content": {
            CONTENT_TYPE_JSON: {
                "schema": {
                    "oneOf": [
                        _variant(DF_SPLIT, _SPLIT),
                        _variant(DF_RECORDS, _RECORDS),
                        _variant(INSTANCES, {"anyOf": [_RECORDS, _COLUMNS, _RECORD]}),
                        _variant(INPUTS, {"anyOf": [_RECORDS, _COLUMNS, _RECORD]}),
                    ]
                },
                "examples": examples,
            },
            CONTENT_TYPE_CSV: {
                "schema": {"type": "string"},
                "example": ",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n",
            },
        },
    }


MODEL_HEADERS = {
    MODEL_NAME_HEADER: {
        "description": "the registered model that answered",
        "schema": {"type": "string"},
    },
    MODEL_VERSION_HEADER: {
        "description": "the version that answered",
        "schema": {"type": "string"},
    },
}
