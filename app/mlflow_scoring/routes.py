"""MLflow's scoring protocol per model: /mlflow/<name>[/versions/<version>]/{invocations,ping,
health,version}.

Errors are MLflow's {"error_code", "message"}: 400 BAD_REQUEST (or INVALID_PARAMETER_VALUE for
values the model's contract refuses), 404 RESOURCE_DOES_NOT_EXIST, 409 RESOURCE_CONFLICT (a
version that failed validation), 413, 415, 503 TEMPORARILY_UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response
from flask.views import MethodView

from app.blueprint import Blueprint
from app.errors import error_text, register_protocol_errors
from app.mlflow_scoring import service
from app.mlflow_scoring.schemas import (
    MODEL_HEADERS,
    MlflowErrorSchema,
    MlflowPredictionsSchema,
    request_body,
)

F = TypeVar("F", bound=Callable[..., Any])

blp = Blueprint(
    "mlflow",
    __name__,
    url_prefix="/mlflow",
    description="MLflow's scoring protocol (`mlflow models serve`), one base URL per model: "
    "http://host:port/mlflow/<name> or /mlflow/<name>/versions/<version>.",
)

# MLflow's error codes for the statuses this API answers (mlflow.exceptions' table).
ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    503: "TEMPORARILY_UNAVAILABLE",
}


def _render(code: int, message: str, errors: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    if code == 422:  # values the contract refuses: MLflow's schema errors are 400s too
        return 400, {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": error_text(message, errors),
        }
    fallback = "INTERNAL_ERROR" if code >= 500 else "BAD_REQUEST"
    return code, {
        "error_code": ERROR_CODES.get(code, fallback),
        "message": error_text(message, errors),
    }


register_protocol_errors(blp, _render)


pinned_route = blp.pinned_route


def errors(*codes: int) -> Callable[[F], F]:
    """Document MLflow's error body for each status code."""
    return blp.error_responses(MlflowErrorSchema, *codes)


def documented_ping(view: F) -> F:
    """GET ping/health: 200 with MLflow's body, a newline."""
    view = blp.response(200, description="The model can answer.", headers=MODEL_HEADERS)(view)
    return errors(404, 409, 503)(view)


def documented_invocations(view: F) -> F:
    """POST invocations: the body forms, the predictions and the errors."""
    view = blp.doc(requestBody=request_body())(view)
    view = blp.response(
        200, MlflowPredictionsSchema, description="One prediction per row.", headers=MODEL_HEADERS
    )(view)
    return errors(400, 404, 409, 413, 415, 503)(view)


def documented_version(view: F) -> F:
    """GET version: the MLflow version, bare text."""
    view = blp.response(200, description="The MLflow version this server speaks, e.g. 3.17.2.")(
        view
    )
    return errors(404)(view)


@blp.route("/<string:name>/invocations")
class Invocations(MethodView):
    """Scoring with the champion."""

    @documented_invocations
    def post(self, name: str) -> Response:
        """One prediction per row: dataframe_split, dataframe_records, instances, inputs or CSV."""
        return service.invocations(name, None)


@pinned_route("/<string:name>/versions/<string:version>/invocations")
class VersionInvocations(MethodView):
    """Scoring with a pinned version."""

    @documented_invocations
    def post(self, name: str, version: str) -> Response:
        """The same with a version number or alias (champion, previous, challenger)."""
        return service.invocations(name, version)


@blp.route("/<string:name>/ping")
class Ping(MethodView):
    """Health check of the champion."""

    @documented_ping
    def get(self, name: str) -> Response:
        """200 when the champion is loaded in this worker."""
        return service.ping(name, None)


@blp.route("/<string:name>/health")
class Health(MethodView):
    """Health check of the champion (MLflow's alias of ping)."""

    @documented_ping
    def get(self, name: str) -> Response:
        """200 when the champion is loaded in this worker."""
        return service.ping(name, None)


@pinned_route("/<string:name>/versions/<string:version>/ping")
class VersionPing(MethodView):
    """Health check of a pinned version."""

    @documented_ping
    def get(self, name: str, version: str) -> Response:
        """200 once the version is loaded (now, if it was not) in this worker."""
        return service.ping(name, version)


@pinned_route("/<string:name>/versions/<string:version>/health")
class VersionHealth(MethodView):
    """Health check of a pinned version (MLflow's alias of ping)."""

    @documented_ping
    def get(self, name: str, version: str) -> Response:
        """200 once the version is loaded (now, if it was not) in this worker."""
        return service.ping(name, version)


@blp.route("/<string:name>/version")
class Version(MethodView):
    """The MLflow version."""

    @documented_version
    def get(self, name: str) -> Response:
        """What `mlflow models serve` answers: the MLflow version as bare text."""
        return service.server_version(name)


@pinned_route("/<string:name>/versions/<string:version>/version")
class VersionVersion(MethodView):
    """The MLflow version, under a pinned base URL."""

    @documented_version
    def get(self, name: str, version: str) -> Response:
        """What `mlflow models serve` answers: the MLflow version as bare text."""
        return service.server_version(name)
