"""Per-worker routing of unpinned requests: the champion answers, except the canary's share.

The canary setting (core.canary) is read from the registry on every pass of the model
refresher, so each worker applies a change within MODEL_REFRESH_SECONDS; the worker that
handled the admin call applies it at once. A registry that cannot answer leaves the last known
routing in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from flask import request

from core import canary as core_canary
from core import metrics
from core import registry as core_registry
from core.canary import Canary
from core.specs import ALIAS_CHALLENGER, ModelSpec

log = logging.getLogger(__name__)

# Requests carrying the same key are routed alike (sticky canary); without it, the request id.
CLIENT_KEY_HEADER = "X-Client-Key"


def routing_key(request_id: str) -> str:
    """The current request's routing key: its X-Client-Key header, else its request id."""
    return request.headers.get(CLIENT_KEY_HEADER) or request_id


class Traffic:
    """Which share of each model's unpinned traffic its @challenger answers in this worker."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        registry: ModuleType | Any = core_registry,
        prepare: Callable[[ModelSpec, str], Any] | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.registry = registry
        # Loads a version before traffic goes to it, so no request waits for the load.
        self._prepare = prepare
        self._canaries: dict[str, Canary | None] = dict.fromkeys(self.specs)
        self._challengers: dict[str, str | None] = dict.fromkeys(self.specs)

    def challenger(self, name: str) -> str | None:
        """The model's @challenger version as of the last refresh (None: it has none)."""
        return self._challengers.get(name)

    def canary(self, name: str) -> Canary | None:
        """The canary applied to a model now (None: the champion answers everything)."""
        return self._canaries.get(name)

    def to_challenger(self, spec: ModelSpec, key: str) -> bool:
        """True when the request with this routing key goes to the challenger."""
        canary = self._canaries.get(spec.name)
        return canary is not None and core_canary.bucket(spec.name, key) < canary.share

    def apply(self, name: str, canary: Canary | None) -> None:
        """Route by canary from now on (one assignment: a request sees the old or the new)."""
        before = self._canaries.get(name)
        self._canaries[name] = canary
        if before is not None and (canary is None or canary.version != before.version):
            metrics.MODEL_CANARY_SHARE.labels(name, before.version).set(0)
        if canary is not None:
            metrics.MODEL_CANARY_SHARE.labels(name, canary.version).set(canary.share)
        if before != canary:
            log.info(
                "canary of %s: %s",
                name,
                f"{canary.share:.0%} to version {canary.version}" if canary else "off",
            )

    def refresh(self) -> None:
        """Read every model's canary from the registry (a model whose read fails keeps its)."""
        for name, spec in self.specs.items():
            try:
                aliases, tags = self.registry.model_state(spec.registered_name)
            except Exception as exc:  # registry outage: keep routing as before
                log.warning("canary lookup for %s failed: %s", spec.registered_name, exc)
                continue
            self._challengers[name] = aliases.get(ALIAS_CHALLENGER)
            found = core_canary.active(Canary.from_tag(tags.get(core_canary.TAG_CANARY)), aliases)
            if found is not None and found != self._canaries.get(name):
                try:
                    self.prepare(spec, found.version)
                except Exception as exc:  # not loadable: the champion keeps all traffic
                    log.warning(
                        "canary of %s: version %s not loadable: %s", name, found.version, exc
                    )
                    found = None
            self.apply(name, found)

    def prepare(self, spec: ModelSpec, version: str) -> None:
        """Load a version the canary will route to (raises when it cannot serve)."""
        if self._prepare is not None:
            self._prepare(spec, version)
