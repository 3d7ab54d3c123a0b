"""Predicting for the standard protocols (V2, MLflow scoring) as /predict does.

Rows are validated by the predict resource's column-wise validator and the model is run by its
predict, so every protocol rejects exactly what /predict rejects and records the same model
metrics, request-log fields and prediction-log rows. (The two predict modules are lent here
through an import-linter exception; see pyproject.toml.)
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from flask import current_app, g

from app.errors import ApiError
from app.inference import Prediction, predict
from app.model_cache import ServedModel
from app.predict.validation import InputValidator
from app.runtime import get_runtime
from app.traffic import routing_key
from app.version_cache import Pinned
from core.specs import MODEL_SPECS, ModelSpec


def spec_or_404(name: str) -> ModelSpec:
    """The spec of a served model, or a 404 naming the models there are."""
    spec = MODEL_SPECS.get(name)
    if spec is None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ApiError(
            404, f"Model {shown!r} is not served here; models: {', '.join(MODEL_SPECS)}."
        )
    return spec


@cache
def _validator(spec: ModelSpec) -> InputValidator:
    return InputValidator(spec)


def max_rows() -> int:
    """The largest batch a request may hold (MAX_BATCH_ROWS)."""
    return current_app.config["MAX_BATCH_ROWS"]


def validate_records(spec: ModelSpec, records: list[Any]) -> Any:
    """The float matrix of records (dicts keyed by field); ApiError 422 naming bad rows."""
    return _validator(spec).parse({"instances": records}, max_rows()).matrix


def pinned(spec: ModelSpec, version: str | None) -> Pinned:
    """The version answering this request: `version` pinned, or the champion."""
    return get_runtime().versions.get(spec, version)


def routed(spec: ModelSpec, version: str | None) -> Pinned:
    """The version answering an inference request: the pinned one, else the champion or, for
    the canary's share of clients, the challenger."""
    return get_runtime().route(spec, version, routing_key(g.rq.request_id))


def predict_and_log(pinned: Pinned, matrix: Any) -> Prediction:
    """Run the pinned version on a validated matrix; log the request and every row; offer a
    routed request to shadow scoring."""
    served = pinned.served
    prediction = predict(served, matrix)
    info = g.rq
    info.model, info.version, info.rows = served.spec.name, served.version, len(prediction)
    writer = get_runtime().prediction_log
    if writer is not None:
        latency_ms = (time.perf_counter() - info.started) * 1000.0
        writer.record(
            info.request_id,
            served.spec.name,
            served.version,
            matrix,
            prediction.log_outputs,
            latency_ms,
        )
    if pinned.routed:
        get_runtime().shadow.offer(pinned, info.request_id, matrix, prediction)
    return prediction


def labels(served: ServedModel, prediction: Prediction) -> list[str]:
    """A classifier's predicted labels."""
    classes = served.classes
    return [classes[i] for i in prediction.labels.tolist()]


def probabilities_in_spec_order(served: ServedModel, prediction: Prediction) -> Any:
    """A classifier's probabilities (n, classes), columns in the spec's class order; None
    when the model has no predict_proba."""
    proba = prediction.probabilities
    if proba is None or served.to_spec_columns is None:
        return proba
    return proba[:, served.to_spec_columns]
