"""Open Inference Protocol V2 over REST (KServe, Triton, MLServer clients): /v2/...

Every error is {"error": "..."}: 400 for a request that cannot be used (structure, tensors or
values), 404 unknown model or version, 409 a version that failed validation, 413, 415, 503.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, Response
from flask.views import MethodView
from marshmallow import Schema
from webargs.flaskparser import FlaskParser

from app.blueprint import Blueprint
from app.errors import error_text, register_protocol_errors
from app.v2 import service
from app.v2.schemas import (
    V2ErrorSchema,
    V2InferRequestSchema,
    V2InferResponseSchema,
    V2LiveSchema,
    V2ModelMetadataSchema,
    V2ModelReadySchema,
    V2ReadySchema,
    V2ServerMetadataSchema,
    infer_examples,
)
from app.v2.tensors import InferBody, InferRequest, read_infer_body
from core.specs import HOUSING

F = TypeVar("F", bound=Callable[..., Any])


class InferBodyParser(FlaskParser):
    """Reads an infer body: JSON with or without a Content-Type, or JSON plus binary tensors."""

    def load_json(self, req: Request, schema: Schema) -> InferBody:
        """The body of req (400, 413 and 415 as ApiErrors)."""
        return read_infer_body()


class V2Blueprint(Blueprint):
    """The project's Blueprint reading infer bodies the way V2 clients send them."""

    ARGUMENTS_PARSER = InferBodyParser()


blp = V2Blueprint(
    "v2",
    __name__,
    url_prefix="/v2",
    description="Open Inference Protocol V2 (REST): KServe, Triton and MLServer clients.",
)


def _render(code: int, message: str, errors: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    # The protocol answers 400 for every request it cannot use, invalid values included.
    return (400 if code == 422 else code), {"error": error_text(message, errors)}


register_protocol_errors(blp, _render)


pinned_route = blp.pinned_route


def errors(*codes: int) -> Callable[[F], F]:
    """Document the V2 error body for each status code."""
    return blp.error_responses(V2ErrorSchema, *codes)


@blp.route("")
class ServerMetadata(MethodView):
    """Server metadata."""

    @blp.response(200, V2ServerMetadataSchema)
    def get(self) -> dict[str, Any]:
        """Name, version and extensions of the server."""
        return service.server_metadata()


@blp.route("/health/live")
class ServerLive(MethodView):
    """Server liveness."""

    @blp.response(200, V2LiveSchema)
    def get(self) -> dict[str, bool]:
        """The server answers."""
        return {"live": True}


@blp.route("/health/ready")
class ServerReady(MethodView):
    """Server readiness."""

    @blp.response(200, V2ReadySchema)
    @errors(503)
    def get(self) -> dict[str, bool]:
        """Every model is loaded and warmed in this worker; 503 otherwise."""
        return service.server_ready()


@blp.route("/models/<string:name>")
class ModelMetadata(MethodView):
    """Model metadata (the champion)."""

    @blp.response(200, V2ModelMetadataSchema)
    @errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """Inputs, outputs, datatypes and shapes; parameters name the version."""
        return service.model_metadata(name, None)


@pinned_route("/models/<string:name>/versions/<string:version>")
class VersionMetadata(MethodView):
    """Model metadata of a pinned version."""

    @blp.response(200, V2ModelMetadataSchema)
    @errors(404, 409, 503)
    def get(self, name: str, version: str) -> dict[str, Any]:
        """The same for a version number or alias (champion, previous, challenger)."""
        return service.model_metadata(name, version)


@blp.route("/models/<string:name>/ready")
class ModelReady(MethodView):
    """Model readiness (the champion)."""

    @blp.response(200, V2ModelReadySchema)
    @errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """The champion is loaded and warmed in this worker."""
        return service.model_ready(name, None)


@pinned_route("/models/<string:name>/versions/<string:version>/ready")
class VersionReady(MethodView):
    """Readiness of a pinned version."""

    @blp.response(200, V2ModelReadySchema)
    @errors(404, 409, 503)
    def get(self, name: str, version: str) -> dict[str, Any]:
        """The version is loaded (now, if it was not) and warmed in this worker."""
        return service.model_ready(name, version)


def documented_infer(view: F) -> F:
    """The OpenAPI documentation of an infer operation beyond its request schema."""
    view = blp.response(
        200, V2InferResponseSchema, description="Output tensors and the version that answered."
    )(view)
    return errors(400, 404, 409, 413, 415, 503)(view)


@blp.route("/models/<string:name>/infer")
class Infer(MethodView):
    """Inference with the champion."""

    @blp.arguments(
        V2InferRequestSchema,
        examples=infer_examples(HOUSING.feature_names),
        error_status_code=400,
    )
    @documented_infer
    def post(self, request: InferRequest, name: str) -> Response:
        """Run the champion on the input tensors."""
        return service.infer(name, None, request)


@pinned_route("/models/<string:name>/versions/<string:version>/infer")
class VersionInfer(MethodView):
    """Inference with a pinned version."""

    @blp.arguments(
        V2InferRequestSchema,
        examples=infer_examples(HOUSING.feature_names),
        error_status_code=400,
    )
    @documented_infer
    def post(self, request: InferRequest, name: str, version: str) -> Response:
        """Run a version number or alias (champion, previous, challenger) on the inputs."""
        return service.infer(name, version, request)
