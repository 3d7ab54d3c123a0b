"""Reading and moving the canary: the registry holds it, this worker applies it at once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from app.errors import ApiError, registry_call
from app.runtime import get_runtime
from app.traffic import CLIENT_KEY_HEADER
from core import canary as core_canary
from core import registry
from core.canary import Canary
from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION, ModelSpec

log = logging.getLogger(__name__)


def _view(
    spec: ModelSpec, canary: Canary | None, aliases: dict[str, str], message: str
) -> dict[str, Any]:
    routed = core_canary.active(canary, aliases)
    return {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "share": routed.share if routed else 0.0,
        "active": routed is not None,
        "version": canary.version if canary else None,
        "champion_version": aliases.get(ALIAS_CHAMPION),
        "challenger_version": aliases.get(ALIAS_CHALLENGER),
        "set_at": canary.set_at if canary else None,
        "sticky_header": CLIENT_KEY_HEADER,
        "message": message,
    }


def state(spec: ModelSpec) -> dict[str, Any]:
    """The canary as the registry holds it (every worker converges on it)."""
    aliases, tags = registry_call(registry.model_state, spec.registered_name)
    canary = Canary.from_tag(tags.get(core_canary.TAG_CANARY))
    if canary is None:
        message = "No canary: the champion answers every unpinned request."
    elif core_canary.active(canary, aliases) is None:
        message = f"Inactive: version {canary.version} is no longer @challenger (or is champion)."
    else:
        message = f"{canary.share:.0%} of unpinned requests go to version {canary.version}."
    return _view(spec, canary, aliases, message)


def set_share(spec: ModelSpec, share: float) -> dict[str, Any]:
    """Route share of unpinned traffic to the current @challenger (0: abort)."""
    if share == 0.0:
        return abort(spec)
    aliases, _ = registry_call(registry.model_state, spec.registered_name)
    challenger = aliases.get(ALIAS_CHALLENGER)
    if challenger is None:
        raise ApiError(409, f"{spec.registered_name} has no @challenger version to route to.")
    if challenger == aliases.get(ALIAS_CHAMPION):
        raise ApiError(409, f"Version {challenger} is already the champion: nothing to canary.")
    runtime = get_runtime()
    # Loaded and checked here first: a challenger that cannot serve gets no traffic (409/503).
    runtime.traffic.prepare(spec, challenger)
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    canary = Canary(float(share), challenger, stamp)
    registry_call(
        registry.set_model_tag, spec.registered_name, core_canary.TAG_CANARY, canary.to_tag()
    )
    runtime.traffic.apply(spec.name, canary)
    log.info("admin set the canary of %s: %.0f%% to version %s", spec.name, share * 100, challenger)
    seconds = current_app.config["MODEL_REFRESH_SECONDS"]
    message = (
        f"{share:.0%} of unpinned requests go to version {challenger}; "
        f"every worker applies it within {seconds:g}s."
    )
    return _view(spec, canary, aliases, message)


def abort(spec: ModelSpec) -> dict[str, Any]:
    """Send every request to the champion again (this worker now, the others at their tick)."""
    registry_call(registry.delete_model_tag, spec.registered_name, core_canary.TAG_CANARY)
    get_runtime().traffic.apply(spec.name, None)
    aliases, _ = registry_call(registry.model_state, spec.registered_name)
    log.info("admin aborted the canary of %s", spec.name)
    seconds = current_app.config["MODEL_REFRESH_SECONDS"]
    message = (
        "Canary aborted: the champion answers every unpinned request "
        f"(this worker now, every worker within {seconds:g}s)."
    )
    return _view(spec, None, aliases, message)
