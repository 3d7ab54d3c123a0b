"""The one error shape of the API: {"code", "status", "message", "errors"?} for every failure.

Views raise ApiError (or any werkzeug HTTPException); a failing application database is a 503
wherever it happens; everything unexpected becomes a 500 whose body carries only the request
id, never a traceback or a path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import marshmallow as ma
import orjson
from flask import Blueprint, Flask, Response, current_app, g, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from core import registry

log = logging.getLogger(__name__)

T = TypeVar("T")


class ErrorSchema(ma.Schema):
    """The one error shape, as documented in the OpenAPI components (never used to dump)."""

    code = ma.fields.Integer(required=True, metadata={"description": "HTTP status code"})
    status = ma.fields.String(required=True, metadata={"description": "HTTP reason phrase"})
    message = ma.fields.String(required=True, metadata={"description": "what went wrong"})
    errors = ma.fields.Dict(
        metadata={"description": "per field (and per row index) messages, when any"}
    )


class ApiError(Exception):
    """An error answered to the client with a status, a message and optional field errors."""

    def __init__(
        self,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def registry_call(func: Callable[..., T], *args: Any) -> T:
    """Run a model registry function: NotFound is a 404, Conflict a 409, any other failure a
    503 (the registry being down is not the client's fault)."""
    try:
        return func(*args)
    except registry.NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except registry.Conflict as exc:
        raise ApiError(409, str(exc)) from None
    except ApiError:
        raise
    except Exception:
        log.exception("model registry call %s failed", getattr(func, "__name__", func))
        raise ApiError(503, "The model registry is unavailable; retry later.") from None


def validation_error(errors: dict[str, Any], message: str = "Invalid input.") -> ApiError:
    """A 422 naming the offending fields."""
    return ApiError(422, message, errors)


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error payload for status code."""
    try:
        status = HTTPStatus(code).phrase
    except ValueError:
        status = "Error"
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if errors:
        body["errors"] = errors
    return body


def error_response(
    code: int,
    message: str,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error response in the one shape."""
    body = error_body(code, message, errors)
    try:
        payload = orjson.dumps(body)
    except TypeError:
        # Field names echo client input, which may hold lone surrogates that orjson refuses;
        # the standard encoder escapes them.
        payload = json.dumps(body).encode()
    response = Response(payload, status=code, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    info = g.get("rq")
    if info is not None:
        info.error = message
    return response


def _unwrap_locations(errors: Any) -> Any:
    # webargs nests errors under their location ({"json": {...}}); clients want fields.
    if isinstance(errors, dict) and len(errors) == 1:
        ((location, inner),) = errors.items()
        if location in ("json", "query", "form", "view_args", "path") and isinstance(inner, dict):
            return inner
    return errors


def handle_api_error(exc: ApiError) -> Response:
    """Our own errors."""
    return error_response(exc.code, exc.message, exc.errors, exc.headers)


def handle_http_exception(exc: HTTPException) -> Response:
    """werkzeug's errors (404, 405, 413, ...) and flask-smorest/webargs aborts."""
    protocol = _unrouted_protocol_handler()
    return protocol(exc) if protocol is not None else _http_error(exc)


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    message = data.get("message") or (exc.description or HTTPStatus(code).phrase)
    if code == 422 and errors and "message" not in data:
        message = "Invalid input."
    headers = {
        key: value
        for key, value in exc.get_headers()
        if key.lower() not in ("content-type", "content-length")
    }
    headers.update(data.get("headers") or {})
    if code >= 500:
        message = HTTPStatus(code).phrase + "."
    return error_response(code, message, _unwrap_locations(errors), headers)


def handle_storage_error(exc: SQLAlchemyError) -> Response:
    """The application database failed (down, locked, full): the client may retry later."""
    info = g.get("rq")
    reason = (str(exc).strip().splitlines() or [""])[0]  # SQLAlchemy appends the SQL
    log.error(
        "database unavailable: %s: %s",
        type(exc).__name__,
        reason,
        extra={"request_id": info.request_id if info else None},
    )
    return error_response(503, "The database is unavailable; retry later.")


def handle_unexpected(exc: Exception) -> Response:
    """Anything not raised on purpose: log it with the request id, answer a bare 500."""
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    info = g.get("rq")
    log.exception("unhandled error", extra={"request_id": info.request_id if info else None})
    return error_response(500, "Internal server error; quote the request id when reporting it.")


def answer_error(exc: Exception) -> Response:
    """The response the app gives for exc, in the one shape."""
    if isinstance(exc, ApiError):
        return handle_api_error(exc)
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, SQLAlchemyError):
        return handle_storage_error(exc)
    return handle_unexpected(exc)


def error_text(message: str, errors: dict[str, Any] | None, limit: int = 2000) -> str:
    """message followed by every field error, for protocols whose errors are one string.

    {"instances": {"3": {"MedInc": ["Must be ..."]}}} reads "row 3, MedInc: Must be ...".
    """
    parts: list[str] = []

    def walk(path: list[str], node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                key = str(key)
                step = (
                    []
                    if key in ("instances", "_schema")
                    else [f"row {key}" if key.isdigit() else key]
                )
                walk(path + step, value)
        else:
            texts = node if isinstance(node, list) else [node]
            where = ", ".join(path)
            parts.append(
                f"{where}: {' '.join(map(str, texts))}" if where else " ".join(map(str, texts))
            )

    walk([], errors or {})
    text = message if not parts else f"{message.rstrip('.')}: {'; '.join(parts)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# app.extensions key: URL prefix of a standard protocol -> its error handler.
PROTOCOL_ERRORS = "protocol_errors"
# A protocol's error body from (status, message, field errors): (status to answer, body).
ErrorRenderer = Callable[[int, str, dict[str, Any] | None], tuple[int, dict[str, Any]]]


def register_protocol_errors(blueprint: Blueprint, render: ErrorRenderer) -> None:
    """Answer errors raised in blueprint's views in another protocol's body shape.

    Which status, which headers, what is logged and that a 500 tells nothing internal stay as
    for every endpoint; render only rewrites the body (and may map a status, e.g. 422 to 400).
    """

    def handle(exc: Exception) -> Response:
        response = answer_error(exc)
        body = orjson.loads(response.get_data())
        status, payload = render(body["code"], body["message"], body.get("errors"))
        try:
            data = orjson.dumps(payload)
        except TypeError:  # lone surrogates echoed from client input
            data = json.dumps(payload).encode()
        response.set_data(data)
        response.status_code = status
        return response

    blueprint.register_error_handler(Exception, handle)

    def remember(state: BlueprintSetupState) -> None:
        # A path under the prefix that matches no route (404, 405) is no blueprint's error:
        # handle_http_exception finds the protocol's shape here.
        prefix = state.url_prefix or blueprint.url_prefix or ""
        state.app.extensions.setdefault(PROTOCOL_ERRORS, {})[prefix.rstrip("/")] = handle

    blueprint.record_once(remember)


def _unrouted_protocol_handler() -> Callable[[Exception], Response] | None:
    """The protocol error handler owning the path of a request no route matched, if any."""
    if request.url_rule is not None:
        return None
    for prefix, handler in current_app.extensions.get(PROTOCOL_ERRORS, {}).items():
        if prefix and (request.path == prefix or request.path.startswith(prefix + "/")):
            return handler
    return None


def register_error_handlers(app: Flask) -> None:
    """Route every error through the one shape (replaces flask-smorest's handler)."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(SQLAlchemyError, handle_storage_error)
    app.register_error_handler(Exception, handle_unexpected)
