"""MLflow's scoring protocol: ping, version and invocations, per model and pinned version.

A client written for `mlflow models serve` works unchanged with its base URL set to
/mlflow/<name> (the champion) or /mlflow/<name>/versions/<version>. Predictions are what
the served scikit-learn model's pyfunc predict() returns: housing values, iris labels.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version as package_version

import orjson
from flask import Response, request

from app import prediction
from app.json_body import parse_json, read_body
from app.mlflow_scoring.formats import CONTENT_TYPE_CSV, csv_records, json_records, media_type
from core.specs import ModelSpec

MODEL_NAME_HEADER = "X-Model-Name"
MODEL_VERSION_HEADER = "X-Model-Version"


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
    records = (
        csv_records(raw, limit)
        if mime == CONTENT_TYPE_CSV
        else json_records(parse_json(raw), limit)
    )
    matrix = prediction.validate_records(spec, records)
    # Checked before a pinned version is looked up (or loaded): a bad request changes nothing.
    pinned = prediction.pinned(spec, version)
    result = prediction.predict_and_log(pinned, matrix)
    predictions = (
        result.values.tolist()
        if spec.task == "regression"
        else prediction.labels(pinned.served, result)
    )
    body = orjson.dumps({"predictions": predictions})
    return _named(
        Response(body, status=200, mimetype="application/json"), spec, pinned.served.version
    )
