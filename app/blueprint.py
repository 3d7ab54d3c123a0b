"""The one Blueprint base of every resource: flask-smorest's, reading JSON with app.json_body.

webargs' own JSON loading answers a body nested 100k deep or an integer of 5,000 digits with a
500 (RecursionError / ValueError escape it), a non-JSON content type with "missing field" 422s
and an empty body as `{}`; reading through read_json_body gives every endpoint the same
400/413/415 answers as the prediction endpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs.flaskparser import FlaskParser

from app.json_body import read_json_body
from app.version_cache import version_parameter

F = TypeVar("F", bound=Callable[..., Any])


class JsonBodyParser(FlaskParser):
    """A webargs parser whose `json` location is read_json_body() (400, 413 and 415 checks)."""

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """The parsed body of req, or an ApiError with the right status."""
        return read_json_body()


class Blueprint(flask_smorest.Blueprint):
    """flask_smorest.Blueprint with the project's JSON body parser; every resource uses it."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def pinned_route(self, rule: str) -> Callable[[type], type]:
        """route() for a rule with a <version> pin, documenting what a pin may be."""
        return self.route(rule, parameters=[version_parameter("path")])

    def alt_responses(self, *codes: int) -> Callable[[F], F]:
        """Document each status code as an error in the API's one error shape."""

        def decorate(view: F) -> F:
            for code in codes:
                view = self.alt_response(code, response=HTTPStatus(code).name)(view)
            return view

        return decorate

    def error_responses(self, schema: type[ma.Schema], *codes: int) -> Callable[[F], F]:
        """Document schema as the error body of each status code (the standard protocols')."""

        def decorate(view: F) -> F:
            for code in codes:
                view = self.alt_response(code, schema=schema, description="Error.")(view)
            return view

        return decorate
