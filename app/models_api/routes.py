"""What is served and what is registered; admin moves of the champion alias."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.errors import ApiError
from app.feedback.routes import feedback_engine
from app.json_body import json_required
from app.models_api.schemas import (
    AliasMoveSchema,
    DriftReportSchema,
    ModelDetailSchema,
    ModelsInfoSchema,
    PerformanceQuerySchema,
    PerformanceSchema,
    PromoteSchema,
)
from app.services import get_services
from core import feedback, monitor_reports, registry
from core.registry import VersionInfo
from core.specs import MODEL_SPECS, ModelSpec

log = logging.getLogger(__name__)

blp = Blueprint(
    "models", __name__, url_prefix="/models", description="Served and registered models."
)


def _spec_or_404(name: str) -> ModelSpec:
    spec = MODEL_SPECS.get(name)
    if spec is None:
        raise ApiError(404, f"Unknown model {name!r}; known: {', '.join(MODEL_SPECS)}.")
    return spec


def _served(spec: ModelSpec) -> dict[str, Any]:
    cache = get_services().cache
    record = cache.get(spec.name)
    state = cache.status()[spec.name]
    if record is None:
        return {
            "name": spec.name,
            "registered_name": spec.registered_name,
            "status": "unavailable",
            "version": None,
            "features": spec.feature_names,
            "last_error": state["last_error"],
        }
    return {**record.describe(), "status": "ok", "last_error": state["last_error"]}


def _version(info: VersionInfo) -> dict[str, Any]:
    return {
        "version": info.version,
        "aliases": sorted(info.aliases),
        "run_id": info.run_id,
        "created_at": info.created_at,
        "algorithm": info.tags.get("algorithm"),
        "metrics": info.tag_json("metrics", {}),
        "rejected_reason": info.tags.get(registry.TAG_REJECTED_REASON),
    }


def _registry_call(func, *args):  # thin error translation
    """Run a registry function, mapping its failures onto HTTP errors."""
    try:
        return func(*args)
    except registry.NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except registry.Conflict as exc:
        raise ApiError(409, str(exc)) from None
    except Exception:  # the registry being down is a 503, not a 500
        log.exception("model registry call %s failed", getattr(func, "__name__", func))
        raise ApiError(503, "The model registry is unavailable; retry later.") from None


def _moved(spec: ModelSpec, info: VersionInfo, verb: str) -> dict[str, Any]:
    get_services().cache.poke()  # this worker checks at once; the others at their next tick
    seconds = current_app.config["MODEL_REFRESH_SECONDS"]
    return {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "champion": _version(info),
        "message": f"{verb} version {info.version}; every worker serves it within {seconds:g}s.",
    }


@blp.route("/info")
class ModelsInfo(MethodView):
    """Every served model."""

    @blp.response(200, ModelsInfoSchema)
    def get(self) -> dict[str, Any]:
        """Served version, run, algorithm, metrics, params, features and load time per model."""
        return {"models": [_served(spec) for spec in MODEL_SPECS.values()]}


@blp.route("/<string:name>")
class ModelDetail(MethodView):
    """One model: what is served and every registered version."""

    @blp.response(200, ModelDetailSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self, name: str) -> dict[str, Any]:
        """The served version and the registry's versions with their aliases, newest first."""
        spec = _spec_or_404(name)
        versions = _registry_call(registry.list_versions, spec.registered_name)
        return {
            "name": spec.name,
            "registered_name": spec.registered_name,
            "task": spec.task,
            "served": _served(spec),
            "versions": [_version(v) for v in versions],
        }


@blp.route("/<string:name>/promote")
class Promote(MethodView):
    """Make a version the champion."""

    # Outermost last: the token is checked first, then the content type, then the body.
    decorators = [json_required, admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.arguments(PromoteSchema, example={"version": "2"})
    @blp.response(200, AliasMoveSchema)
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
    @blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
    def post(self, body: dict[str, str], name: str) -> dict[str, Any]:
        """Point @champion at a version (the old champion becomes @previous). Admin only."""
        spec = _spec_or_404(name)
        info = _registry_call(registry.promote, spec.registered_name, body["version"])
        log.info("admin promoted %s version %s", spec.registered_name, info.version)
        return _moved(spec, info, "Promoted")


@blp.route("/<string:name>/rollback")
class Rollback(MethodView):
    """Return to the previous champion."""

    decorators = [admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.response(200, AliasMoveSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    def post(self, name: str) -> dict[str, Any]:
        """Move @champion back to @previous. Admin only; 409 when there is no previous."""
        spec = _spec_or_404(name)
        info = _registry_call(registry.rollback, spec.registered_name)
        log.info("admin rolled %s back to version %s", spec.registered_name, info.version)
        return _moved(spec, info, "Rolled back to")


def _database_down(what: str) -> ApiError:
    log.exception("reading %s failed", what)
    return ApiError(503, f"The {what} database is unavailable; retry later.")


@blp.route("/<string:name>/performance")
class Performance(MethodView):
    """Live quality from ground-truth labels."""

    @blp.arguments(PerformanceQuerySchema, location="query")
    @blp.response(200, PerformanceSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self, query: dict[str, int], name: str) -> dict[str, Any]:
        """Live metrics per version over its newest `window` labels (see POST /feedback).

        Housing: rmse and mae (100k USD); iris: accuracy. Versions are listed most recently
        labelled first; `served_version` is the version this worker serves now.
        """
        spec = _spec_or_404(name)
        window = query["window"]
        served = get_services().cache.get(spec.name)
        try:
            engine = feedback_engine()
            found = [
                feedback.quality(engine, spec, version, window)
                for version in feedback.versions(engine, spec.name)
            ]
        except SQLAlchemyError:
            raise _database_down("feedback") from None
        return {
            "model": spec.name,
            "registered_name": spec.registered_name,
            "task": spec.task,
            "window": window,
            "served_version": served.version if served is not None else None,
            "versions": found,
        }


@blp.route("/<string:name>/drift")
class Drift(MethodView):
    """Input drift of recent predictions against the training data."""

    @blp.response(200, DriftReportSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self, name: str) -> dict[str, Any]:
        """The newest drift check (PSI per feature) written by the periodic monitor.

        `status` is ok, drift (overall PSI at or above the threshold), insufficient_data (too
        few recent rows), no_reference (no training reference for the version), or pending
        before the monitor's first check of the model.
        """
        spec = _spec_or_404(name)
        try:
            report = monitor_reports.latest(feedback_engine(), monitor_reports.DRIFT, spec.name)
        except SQLAlchemyError:
            raise _database_down("monitoring") from None
        if report is None:
            report = {"status": "pending", "features": {}}
        fields = ("status", "version", "overall_psi", "threshold", "window_rows", "min_rows")
        return {
            "model": spec.name,
            "checked_at": report.get("created_at"),
            **{key: report.get(key) for key in fields},
            "features": report.get("features") or {},
        }
