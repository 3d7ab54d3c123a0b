"""What the model endpoints report: served versions, registry versions, live quality, drift,
and champion against challenger on the same live requests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

from flask import current_app

from app.errors import ApiError, registry_call
from app.models_api.schemas import PENDING
from app.runtime import get_runtime
from core import comparison, feedback, monitor_reports, registry
from core.compiled import TAG_RUNTIME
from core.registry import VersionInfo
from core.settings import PROJECT_ROOT
from core.specs import ALIAS_CHALLENGER, MODEL_SPECS, ModelSpec

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


def detail(spec: ModelSpec) -> dict[str, Any]:
    """GET /models/<name>: what is served and every registered version, newest first."""
    versions = registry_call(registry.list_versions, spec.registered_name)
    return {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "task": spec.task,
        "served": served(spec),
        "versions": [version_view(v) for v in versions],
    }


def promote(spec: ModelSpec, version: str) -> dict[str, Any]:
    """Point @champion at version (the old champion becomes @previous)."""
    info = registry_call(registry.promote, spec.registered_name, version)
    log.info("admin promoted %s version %s", spec.registered_name, info.version)
    return _moved(spec, info, "Promoted")


def rollback(spec: ModelSpec) -> dict[str, Any]:
    """Move @champion back to @previous."""
    info = registry_call(registry.rollback, spec.registered_name)
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


# The params.yaml whose `comparison:` section the API reads: the image's own, like the monitor's
# checks (deploy/entrypoint.sh); app.config["PARAMS_FILE"] replaces it (tests).
DEFAULT_PARAMS_FILE = PROJECT_ROOT / "params.yaml"


def comparison_params(spec: ModelSpec) -> comparison.ComparisonParams:
    """The model's comparison settings, read on every call (a change applies at once)."""
    path = Path(current_app.config.get("PARAMS_FILE") or DEFAULT_PARAMS_FILE)
    try:
        return comparison.load_params(path)[spec.name]
    except OSError:
        log.exception("cannot read the comparison settings from %s", path)
        raise ApiError(500, "The comparison settings (params.yaml) cannot be read.") from None
    except comparison.ComparisonParamsError as exc:
        log.error("invalid comparison settings in %s: %s", path, exc)
        raise ApiError(500, f"The comparison settings are invalid: {exc}") from None


def compare(spec: ModelSpec) -> dict[str, Any]:
    """GET /models/<name>/comparison: @champion against @challenger on the rows both scored."""
    params = comparison_params(spec)
    champion = registry_call(registry.champion, spec.registered_name)
    challenger = registry_call(registry.get_alias, spec.registered_name, ALIAS_CHALLENGER)
    if champion is None or challenger is None or challenger.version == champion.version:
        return comparison.without_challenger(spec, champion.version if champion else None, params)
    engine = get_runtime().database()
    return comparison.compare(engine, spec, champion.version, challenger.version, params)
