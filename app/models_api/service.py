"""What the model endpoints report: served versions, registry versions, live quality, drift."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app

from app.errors import ApiError
from app.models_api.schemas import PENDING
from app.runtime import get_runtime
from core import feedback, monitor_reports, registry
from core.compiled import TAG_RUNTIME
from core.registry import VersionInfo
from core.specs import MODEL_SPECS, ModelSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

DRIFT_FIELDS = ("status", "version", "overall_psi", "threshold", "window_rows", "min_rows")


def spec_or_404(name: str) -> ModelSpec:
    """The spec of a served model; 404 naming the known ones."""
    spec = MODEL_SPECS.get(name)
    if spec is None:
        raise ApiError(404, f"Unknown model {name!r}; known: {', '.join(MODEL_SPECS)}.")
    return spec


def served(spec: ModelSpec) -> dict[str, Any]:
    """The version this worker serves (or why none), as GET /models/info shows it."""
    cache = get_runtime().cache
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


def version_view(info: VersionInfo) -> dict[str, Any]:
    """One registered version as the model endpoints show it."""
    return {
        "version": info.version,
        "aliases": sorted(info.aliases),
        "run_id": info.run_id,
        "created_at": info.created_at,
        "algorithm": info.tags.get("algorithm"),
        "runtime": info.tags.get(TAG_RUNTIME),
        "metrics": info.tag_json("metrics", {}),
        "rejected_reason": info.tags.get(registry.TAG_REJECTED_REASON),
    }


def _registry_call(func: Callable[..., T], *args: Any) -> T:
    """Run a registry function: NotFound is 404, Conflict 409, any other failure 503."""
    try:
        return func(*args)
    except registry.NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except registry.Conflict as exc:
        raise ApiError(409, str(exc)) from None
    except Exception:  # the registry being down is a 503, not a 500
        log.exception("model registry call %s failed", getattr(func, "__name__", func))
        raise ApiError(503, "The model registry is unavailable; retry later.") from None


def detail(spec: ModelSpec) -> dict[str, Any]:
    """GET /models/<name>: what is served and every registered version, newest first."""
    versions = _registry_call(registry.list_versions, spec.registered_name)
    return {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "task": spec.task,
        "served": served(spec),
        "versions": [version_view(v) for v in versions],
    }


def promote(spec: ModelSpec, version: str) -> dict[str, Any]:
    """Point @champion at version (the old champion becomes @previous)."""
    info = _registry_call(registry.promote, spec.registered_name, version)
    log.info("admin promoted %s version %s", spec.registered_name, info.version)
    return _moved(spec, info, "Promoted")


def rollback(spec: ModelSpec) -> dict[str, Any]:
    """Move @champion back to @previous."""
    info = _registry_call(registry.rollback, spec.registered_name)
    log.info("admin rolled %s back to version %s", spec.registered_name, info.version)
    return _moved(spec, info, "Rolled back to")


def _moved(spec: ModelSpec, info: VersionInfo, verb: str) -> dict[str, Any]:
    get_runtime().cache.poke()  # this worker checks at once; the others at their next tick
    seconds = current_app.config["MODEL_REFRESH_SECONDS"]
    return {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "champion": version_view(info),
        "message": f"{verb} version {info.version}; every worker serves it within {seconds:g}s.",
    }


def performance(spec: ModelSpec, window: int) -> dict[str, Any]:
    """Live quality of every labelled version over its newest `window` labels."""
    current = get_runtime().cache.get(spec.name)
    engine = get_runtime().database()
    found = [
        feedback.quality(engine, spec, version, window)
        for version in feedback.versions(engine, spec.name)
    ]
    return {
        "model": spec.name,
        "registered_name": spec.registered_name,
        "task": spec.task,
        "window": window,
        "served_version": current.version if current is not None else None,
        "versions": found,
    }


def drift(spec: ModelSpec) -> dict[str, Any]:
    """The newest drift report the monitor stored for the model ("pending" before its first)."""
    report = monitor_reports.latest(get_runtime().database(), monitor_reports.DRIFT, spec.name)
    if report is None:
        report = {"status": PENDING, "features": {}}
    return {
        "model": spec.name,
        "checked_at": report.get("created_at"),
        **{key: report.get(key) for key in DRIFT_FIELDS},
        "features": report.get("features") or {},
    }
