"""Reading a JSON request body: content type (415), size (413) and syntax (400) checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

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


def read_body() -> bytes:
    """The raw body; 413 past MAX_CONTENT_LENGTH, whether or not it declares a length."""
    # A declared Content-Length over the limit raises RequestEntityTooLarge here.
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    # werkzeug stops reading a streamed (chunked) body at the limit without an error, so the
    # JSON parser would see a silently truncated document: one more byte on the server's
    # input stream means the client sent too much.
    streamed_to_limit = limit is not None and request.content_length is None and len(raw) >= limit
    if streamed_to_limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def _syntax_error(exc: Exception) -> str:
    """What is wrong with a body the standard parser refused, for the 400 message."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return "the body is not valid UTF-8"
    if isinstance(exc, RecursionError):
        return "the document is nested too deeply"
    if "digits" in str(exc):  # int() refuses literals beyond sys.get_int_max_str_digits()
        return "a number has too many digits"
    return "invalid document"


def read_json_body() -> Any:
    """The parsed body of the current request, or an ApiError with the right status."""
    require_json_content_type()
    raw = read_body()
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """A JSON document read from raw bytes, or an ApiError 400 saying what is wrong with it."""
    if not raw:
        raise ApiError(400, "Malformed JSON: the request body is empty.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson is strict; the standard parser also reads NaN/Infinity and integers beyond 64 bits,
    # which then fail validation as 422 with the field named, as the contract asks. Decoding
    # first keeps UTF-8 the only accepted encoding (json.loads would guess UTF-16 or UTF-32).
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"Malformed JSON: {_syntax_error(exc)}.") from None
