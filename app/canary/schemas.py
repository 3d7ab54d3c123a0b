"""Bodies of the canary endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow.validate import Range

from core.canary import MAX_SHARE


class CanaryRequestSchema(ma.Schema):
    """Body of PUT /models/<name>/canary."""

    share = ma.fields.Float(
        required=True,
        allow_nan=False,
        validate=Range(min=0.0, max=MAX_SHARE),
        metadata={
            "example": 0.1,
            "description": f"share of unpinned requests the @challenger answers, 0 to {MAX_SHARE} "
            "(0 is the same as DELETE)",
        },
    )


class CanarySchema(ma.Schema):
    """The canary of one model as the registry holds it."""

    name = ma.fields.String(metadata={"example": "housing"})
    registered_name = ma.fields.String(metadata={"example": "CaliforniaHousingBestModel"})
    share = ma.fields.Float(metadata={"example": 0.1})
    active = ma.fields.Boolean(
        metadata={"description": "the share is routed: its version is still @challenger"}
    )
    version = ma.fields.String(
        allow_none=True, metadata={"example": "4", "description": "the challenger it routes to"}
    )
    champion_version = ma.fields.String(allow_none=True, metadata={"example": "3"})
    challenger_version = ma.fields.String(allow_none=True, metadata={"example": "4"})
    set_at = ma.fields.String(allow_none=True, metadata={"example": "2026-12-08T02:30:00Z"})
    sticky_header = ma.fields.String(
        metadata={
            "example": "X-Client-Key",
            "description": "requests with the same value of this header go the same way; "
            "without it, each request id is routed on its own",
        }
    )
    message = ma.fields.String()
