"""Answering a validated prediction request: the served version, the model, the log, the body."""

from __future__ import annotations

from flask import Response, g, request

from app import intervals, prediction
from app.predict import encode
from app.predict.validation import ParsedInput
from core.specs import ModelSpec


def answer(spec: ModelSpec, parsed: ParsedInput) -> Response:
    """Predict with the version the request pins (?version=), else the one routing chooses
    (the champion, or the challenger for a canary's share); log; answer naming the version."""
    # Read the record once: this request is answered by this version even if a swap happens.
    # ?version= pins another registered version (404, 409, 503 as ApiErrors).
    level = intervals.parse_level(request.args.get(intervals.PARAMETER))
    pinned = prediction.routed(spec, request.args.get("version"))
    served = pinned.served
    # Checked before predicting: a level the version cannot give changes nothing.
    conformal = intervals.intervals_for(served, level) if level is not None else None
    result = prediction.predict_and_log(pinned, parsed.matrix)
    bounds = None
    if conformal is not None and level is not None:
        bounds = encode.Bounds(*conformal.bounds(result.values, level), level)
    payload = encode.body(
        spec, served.classes, result, parsed.single, pinned.ref, g.rq.request_id, bounds
    )
    return Response(payload, status=200, mimetype="application/json")
