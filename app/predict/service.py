"""Answering a validated prediction request: the served version, the model, the log, the body."""

from __future__ import annotations

import time

from flask import Response, g, request

from app.model_cache import ServedModel
from app.predict import encode
from app.predict.inference import predict
from app.predict.validation import ParsedInput
from app.runtime import get_runtime
from core.specs import ModelSpec


def answer(spec: ModelSpec, parsed: ParsedInput) -> Response:
    """Predict with the version the request pins (?version=; default the champion)."""
    # Read the record once: this request is answered by this version even if a swap happens.
    # ?version= pins another registered version (404, 409, 503 as ApiErrors); none: champion.
    pinned = get_runtime().versions.get(spec, request.args.get("version"))
    return respond(pinned.served, pinned.ref, parsed)


def respond(served: ServedModel, ref: dict[str, str], parsed: ParsedInput) -> Response:
    """Answer with an explicitly chosen version: predict, queue the rows for the prediction
    log, and the body naming ref as the model that answered."""
    spec = served.spec
    prediction = predict(served, parsed.matrix)
    info = g.rq
    info.model, info.version, info.rows = spec.name, served.version, len(prediction)
    writer = get_runtime().prediction_log
    if writer is not None:
        latency_ms = (time.perf_counter() - info.started) * 1000.0
        writer.record(
            info.request_id,
            spec.name,
            served.version,
            parsed.matrix,
            prediction.log_outputs,
            latency_ms,
        )
    payload = encode.body(spec, served.classes, prediction, parsed.single, ref, info.request_id)
    return Response(payload, status=200, mimetype="application/json")
