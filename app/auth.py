"""Bearer-token protection of admin endpoints (constant-time comparison)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from app.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

BEARER_AUTH = {"bearerAuth": []}  # OpenAPI security requirement of admin operations
SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "description": "API_ADMIN_TOKEN"}


def check_admin() -> None:
    """Raise 403 when no admin token is configured, 401 when the request lacks the right one."""
    expected = current_app.config.get("API_ADMIN_TOKEN")
    if not expected:
        # Refuse rather than run admin actions open when the operator forgot the token.
        raise ApiError(403, "Admin endpoints are disabled: API_ADMIN_TOKEN is not configured.")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    challenge = {"WWW-Authenticate": 'Bearer realm="admin"'}
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Missing bearer token.", headers=challenge)
    if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(401, "Invalid bearer token.", headers=challenge)


def admin_required(view: F) -> F:
    """Decorator: run check_admin() before the view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_admin()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
