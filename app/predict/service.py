"""Answering a validated prediction request: the served version, the model, the log, the body."""

from __future__ import annotations

import time

import orjson
from flask import Response, g

from app.errors import ApiError
from app.predict.inference import predict_rows
from app.predict.validation import ParsedInput
from app.runtime import get_runtime
from core.specs import ModelSpec


def answer(spec: ModelSpec, parsed: ParsedInput) -> Response:
    """Predict with the current champion of spec, queue the rows for the log, build the body."""
    runtime = get_runtime()
    # Read the record once: this request is answered by this version even if a swap happens.
    served = runtime.cache.get(spec.name)
    if served is None:
        raise ApiError(503, f"Model {spec.name} is not loaded yet; retry shortly.")
    outputs, log_outputs = predict_rows(served, parsed.matrix)

    info = g.rq
    info.model, info.version, info.rows = spec.name, served.version, len(outputs)
    request_id = info.request_id
    if parsed.single:
        out = outputs[0]
        if spec.task == "regression":
            body = {"prediction": out, "unit": spec.unit}
        else:
            body = {"prediction": out["label"], "probabilities": out["probabilities"]}
    else:
        body = {"predictions": outputs}
        if spec.unit:
            body["unit"] = spec.unit
    body["model"] = served.ref
    body["request_id"] = request_id

    writer = runtime.prediction_log
    if writer is not None:
        latency_ms = (time.perf_counter() - info.started) * 1000.0
        writer.record(request_id, spec.name, served.version, parsed.matrix, log_outputs, latency_ms)
    # orjson straight to bytes: a 10,000-row answer skips Flask's JSON provider.
    return Response(orjson.dumps(body), status=200, mimetype="application/json")
