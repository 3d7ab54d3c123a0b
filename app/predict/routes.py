"""POST /predict/housing and /predict/iris (one MethodView per served model)."""

from __future__ import annotations

import time
from http import HTTPStatus

import orjson
from flask import Response, g
from flask.views import MethodView
from flask_smorest import Blueprint

from app.errors import ApiError
from app.json_body import read_json_body
from app.predict.inference import predict_rows
from app.predict.schemas import operation_doc
from app.predict.validation import InputValidator
from app.services import get_services
from core.specs import MODEL_SPECS, ModelSpec

blp = Blueprint(
    "predict",
    __name__,
    url_prefix="/predict",
    description="Predictions from the champion version of each model.",
)

_ERRORS = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.SERVICE_UNAVAILABLE,
)


def predict(spec: ModelSpec, validator: InputValidator) -> Response:
    """Validate the body, predict with the current champion, log and answer."""
    services = get_services()
    # Read the record once: this request is answered by this version even if a swap happens.
    served = services.cache.get(spec.name)
    if served is None:
        raise ApiError(503, f"Model {spec.name} is not loaded yet; retry shortly.")
    parsed = validator.parse(read_json_body(), services.max_batch_rows)
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

    writer = services.prediction_log
    if writer is not None:
        latency_ms = (time.perf_counter() - info.started) * 1000.0
        writer.record(request_id, spec.name, served.version, parsed.matrix, log_outputs, latency_ms)
    return Response(orjson.dumps(body), status=200, mimetype="application/json")


def _make_view(spec: ModelSpec) -> type[MethodView]:
    validator = InputValidator(spec)

    def post(self) -> Response:
        return predict(spec, validator)

    post.__doc__ = f"Predict with the {spec.name} model."
    # flask-smorest's decorators wrap the view in one call layer each; on this hot path we keep
    # only the documentation they collect and call the plain function.
    documented = blp.doc(**operation_doc(spec))(post)
    for status in _ERRORS:
        documented = blp.alt_response(status.value, response=status.name)(documented)
    post._apidoc = documented._apidoc
    # init_every_request=False: one view instance serves every request (it holds no state).
    attrs = {"post": post, "init_every_request": False}
    return type(f"Predict{spec.name.capitalize()}", (MethodView,), attrs)


for _spec in MODEL_SPECS.values():
    blp.route(f"/{_spec.name}")(_make_view(_spec))
