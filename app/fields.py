"""Marshmallow fields shared by request schemas: JSON booleans and text a database can store."""

from __future__ import annotations

import unicodedata
from typing import Any

import marshmallow as ma


class JsonBoolean(ma.fields.Boolean):
    """`true` or `false` only.

    Boolean's truthy/falsy sets match by equality, so 1, 1.0 and -0 would pass as JSON
    booleans: a client's `"force": 1` must be a 422, not a forced retrain.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StorableText(ma.fields.String):
    """A string without lone surrogates or control characters (tab, CR and LF allowed).

    JSON escapes can carry both; SQLite's driver cannot encode a lone surrogate and PostgreSQL
    refuses NUL, so either would surface as a 500 when the value is written.
    """

    default_error_messages = {
        "unstorable": "Must be text without control characters or lone surrogates.",
    }
    # The same rule for OpenAPI clients and generators (a JSON string has no lone surrogate).
    PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": self.PATTERN, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not storable(text):
            raise self.make_error("unstorable")
        return text


def storable(text: str) -> bool:
    """True when text encodes as UTF-8 and has no control character but tab, CR and LF."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(char) == "Cc" and char not in "\t\n\r" for char in text)
