"""Schemas of the model endpoints."""

from __future__ import annotations

import marshmallow as ma


class VersionString(ma.fields.String):
    """A registry version number: "3" or 3 in, "3" out."""

    default_error_messages = {"invalid": 'Must be a positive integer version, e.g. "3".'}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        text = str(value).strip()
        # Registry versions are small integers; the bound keeps absurd values out of the store.
        if not text.isdigit() or len(text) > 9 or int(text) < 1:
            raise self.make_error("invalid")
        return str(int(text))


class PromoteSchema(ma.Schema):
    """Body of POST /models/<name>/promote."""

    version = VersionString(required=True, metadata={"example": "2"})


class ServedModelSchema(ma.Schema):
    """A served model version as seen by this worker."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    status = ma.fields.String(metadata={"example": "ok"})
    version = ma.fields.String(allow_none=True, metadata={"example": "3"})
    alias = ma.fields.String(metadata={"example": "champion"})
    run_id = ma.fields.String(allow_none=True)
    algorithm = ma.fields.String(allow_none=True, metadata={"example": "logistic_regression"})
    metrics = ma.fields.Dict(metadata={"example": {"accuracy": 0.97}})
    params = ma.fields.Dict()
    features = ma.fields.List(ma.fields.String())
    classes = ma.fields.List(ma.fields.String(), allow_none=True)
    unit = ma.fields.String(allow_none=True)
    data_hash = ma.fields.String(allow_none=True)
    git_commit = ma.fields.String(allow_none=True)
    pipeline_run_id = ma.fields.String(allow_none=True)
    loaded_at = ma.fields.String(allow_none=True, metadata={"example": "2026-01-01T12:00:00Z"})
    last_error = ma.fields.String(allow_none=True)


class ModelsInfoSchema(ma.Schema):
    """GET /models/info."""

    models = ma.fields.List(ma.fields.Nested(ServedModelSchema))


class RegistryVersionSchema(ma.Schema):
    """One registered version."""

    version = ma.fields.String(metadata={"example": "2"})
    aliases = ma.fields.List(ma.fields.String(), metadata={"example": ["champion"]})
    run_id = ma.fields.String(allow_none=True)
    created_at = ma.fields.Integer(allow_none=True, metadata={"description": "epoch ms"})
    algorithm = ma.fields.String(allow_none=True)
    metrics = ma.fields.Dict()
    rejected_reason = ma.fields.String(allow_none=True)


class ModelDetailSchema(ma.Schema):
    """GET /models/<name>."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    task = ma.fields.String(metadata={"example": "classification"})
    served = ma.fields.Nested(ServedModelSchema, allow_none=True)
    versions = ma.fields.List(ma.fields.Nested(RegistryVersionSchema))


class AliasMoveSchema(ma.Schema):
    """Result of promote / rollback."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    champion = ma.fields.Nested(RegistryVersionSchema)
    message = ma.fields.String()
