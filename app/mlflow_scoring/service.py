"""MLflow's scoring protocol: ping, version and invocations, per model and pinned version.

A client written for `mlflow models serve` works unchanged with its base URL set to
/mlflow/<name> (the champion) or /mlflow/<name>/versions/<version>. Predictions are what
the served scikit-learn model's pyfunc predict() returns: housing values, iris labels.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version as package_version
from typing import Any

import orjson
from flask import Response, request

from app import intervals, prediction
from app.json_body import parse_json, read_body
from app.mlflow_scoring.formats import (
    CONTENT_TYPE_CSV,
    PARAMS,
    csv_records,
    json_records,
    media_type,
)
from core.specs import ModelSpec

MODEL_NAME_HEADER = "X-Model-Name"
MODEL_VERSION_HEADER = "X-Model-Version"
INTERVAL_FIELD = "params.interval"  # housing: {"prediction", "lower", "upper"} per row


@cache
def mlflow_version() -> str:
    """The MLflow version this server speaks the protocol of (what `/version` answers)."""
    return package_version("mlflow")


def _named(response: Response, spec: ModelSpec, version: str) -> Response:
    response.headers[MODEL_NAME_HEADER] = spec.registered_name
    response.headers[MODEL_VERSION_HEADER] = version
    return response


def ping(name: str, version: str | None) -> Response:
    """200 with MLflow's body ("\\n") once the version can answer; 404, 409 or 503 otherwise."""
    spec = prediction.spec_or_404(name)
    pinned = prediction.pinned(spec, version)
    return _named(
        Response("\n", status=200, mimetype="application/json"), spec, pinned.served.version
    )


def server_version(name: str) -> Response:
    """The MLflow version, as `mlflow models serve` answers it (bare text)."""
    prediction.spec_or_404(name)
    return Response(mlflow_version(), status=200, mimetype="application/json")


def invocations(name: str, version: str | None) -> Response:
    """Score a dataframe_split / dataframe_records / instances / inputs JSON or CSV body."""
    spec = prediction.spec_or_404(name)
    mime = media_type(request.headers.get("Content-Type"))
    raw = read_body()
    limit = prediction.max_rows()
    if mime == CONTENT_TYPE_CSV:
        records, level = csv_records(raw, limit), None
    else:
        payload = parse_json(raw)
        records = json_records(payload, limit)
        level = intervals.parse_level(payload.get(PARAMS, {}).get("interval"), INTERVAL_FIELD)
    matrix = prediction.validate_records(spec, records)
    # Checked before a pinned version is looked up (or loaded): a bad request changes nothing.
    pinned = prediction.routed(spec, version)
    conformal = (
        intervals.intervals_for(pinned.served, level, INTERVAL_FIELD) if level is not None else None
    )
    result = prediction.predict_and_log(pinned, matrix)
    predictions: list[Any]
    if conformal is not None and level is not None:
        # As a pyfunc model returning a DataFrame is answered: one record per row.
        lower, upper = conformal.bounds(result.values, level)
        predictions = [
            {"prediction": p, "lower": lo, "upper": hi}
            for p, lo, hi in zip(
                result.values.tolist(), lower.tolist(), upper.tolist(), strict=True
            )
        ]
    elif spec.task == "regression":
        predictions = result.values.tolist()
    else:
        predictions = prediction.labels(pinned.served, result)
    body = orjson.dumps({"predictions": predictions})
    return _named(
        Response(body, status=200, mimetype="application/json"), spec, pinned.served.version
    )
