"""Reading a JSON request body: content type (415), size (413) and syntax (400) checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from flask import request

from app.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def _is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def require_json_content_type() -> None:
    """415 unless the request declares a JSON body."""
    if not _is_json_mimetype(request.mimetype):
        raise ApiError(415, "Request body must be JSON (Content-Type: application/json).")


def json_required(view: F) -> F:
    """Decorator: 415 for a non-JSON request before the view parses anything."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_json_content_type()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def read_json_body() -> Any:
    """The parsed body of the current request, or an ApiError with the right status."""
    require_json_content_type()
    # Raises RequestEntityTooLarge (413) past MAX_CONTENT_LENGTH, even for chunked bodies.
    raw = request.get_data(cache=False)
    if not raw:
        raise ApiError(400, "Malformed JSON: the request body is empty.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson is strict; the standard parser also reads NaN/Infinity and integers beyond 64 bits,
    # which then fail validation as 422 with the field named, as the contract asks.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid document"
        position = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ApiError(400, f"Malformed JSON: {message}{position}.") from None
