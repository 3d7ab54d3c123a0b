"""POST /predict/housing and /predict/iris: one resource per served model."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import TypeVar

from flask import Response
from flask.views import MethodView

from app.blueprint import Blueprint
from app.predict import service
from app.predict.schemas import (
    REQUEST_ID_HEADER,
    HousingRequestSchema,
    IrisRequestSchema,
    operation_text,
    request_examples,
    response_component,
    response_examples,
)
from app.predict.validation import ParsedInput
from app.version_cache import version_parameter
from core.specs import HOUSING, IRIS, ModelSpec

F = TypeVar("F", bound=Callable[..., Response])

INTERVAL_PARAMETER = {
    "in": "query",
    "name": "interval",
    "required": False,
    "description": "also return a conformal prediction interval per prediction at this "
    "coverage, e.g. 0.9 (calibrated on training data); 409 for a version without them or a "
    "level beyond what its calibration supports (the error names the range)",
    "schema": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "exclusiveMinimum": True,
        "exclusiveMaximum": True,
    },
}

blp = Blueprint(
    "predict",
    __name__,
    url_prefix="/predict",
    description="Predictions from the champion version of each model.",
)


def documented(spec: ModelSpec) -> Callable[[F], F]:
    """The OpenAPI documentation of POST /predict/<model> beyond its request schema."""

    def decorate(view: F) -> F:
        view = blp.response(
            200,
            response_component(spec),
            description="Predictions and the model version that computed them.",
            examples=response_examples(spec),
            headers=REQUEST_ID_HEADER,
        )(view)
        for status in (
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.NOT_FOUND,  # ?version= names no registered version
            HTTPStatus.CONFLICT,  # ?version= names a version that failed validation
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ):
            view = blp.alt_response(status.value, response=status.name)(view)
        parameters = [version_parameter("query")]
        if spec.task == "regression":
            parameters.append(INTERVAL_PARAMETER)
        return blp.doc(**operation_text(spec), parameters=parameters)(view)

    return decorate


@blp.route("/housing")
class PredictHousing(MethodView):
    """Predictions of the housing model."""

    init_every_request = False  # one instance serves every request (it holds no state)

    @blp.arguments(HousingRequestSchema(), examples=request_examples(HOUSING))
    @documented(HOUSING)
    def post(self, parsed: ParsedInput) -> Response:
        """Predict with the housing model."""
        return service.answer(HOUSING, parsed)


@blp.route("/iris")
class PredictIris(MethodView):
    """Predictions of the iris model."""

    init_every_request = False

    @blp.arguments(IrisRequestSchema(), examples=request_examples(IRIS))
    @documented(IRIS)
    def post(self, parsed: ParsedInput) -> Response:
        """Predict with the iris model."""
        return service.answer(IRIS, parsed)
