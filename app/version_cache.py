"""Pinned versions: any registered version that passed validation, by number or alias.

The champion stays with model_cache.ModelCache (hot-swapped, never evicted). Any other version
a request pins is loaded on demand, warmed and checked by model_cache.load_served_model like a
champion, and kept in a per-worker cache bounded in count and in memory, least recently used
evicted first.

What a pin answers:
- a number or alias that names no registered version: 404 (not cached: it may be registered
  later);
- a version that failed validation: 409 with the reason. "Failed validation" means one of
  (a) its validate-stage report (`reports/validation.json` of its run, logged by the register
  stage) says it did not pass, (b) it has no such report at all (it was registered outside the
  pipeline, so nothing ever validated it), (c) it fails the load-time checks every served
  version must pass (features, classes, a finite warm-up prediction). A version the promotion
  gate rejected (tags `promoted=false`, `rejected_reason`) passed validation and is served.
  These verdicts cannot change for a version, so they are remembered;
- a registry or artifact store that cannot answer: 503, and a failed load is not retried for
  RETRY_SECONDS (a hot pin must not turn into a load per request).
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from app.errors import ApiError
from app.model_cache import ModelLoadError, ServedModel, load_served_model
from core import registry as core_registry
from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS, ModelSpec

log = logging.getLogger(__name__)

PINNABLE_ALIASES = (ALIAS_CHAMPION, ALIAS_PREVIOUS, ALIAS_CHALLENGER)
# A version number as the registry writes it; anything else (0, 007, 1e3, 20 digits) names none.
_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
# What a pin may look like, for the OpenAPI documents of every protocol.
VERSION_PATTERN = r"^([1-9][0-9]{0,9}|champion|previous|challenger)$"
RETRY_SECONDS = 30.0  # a version whose load failed is not tried again sooner in this worker


def version_parameter(location: str) -> dict[str, Any]:
    """The OpenAPI doc of a pin in "path" (V2, MLflow) or "query" (`?version=` of /predict).

    A new dict each call: flask-smorest completes path parameters in place.
    """
    return {
        "in": location,
        "name": "version",
        "required": location == "path",
        "description": "a registered version number, or champion (the default), previous or "
        "challenger; 404 when it names no version, 409 when that version failed validation",
        "schema": {"type": "string", "pattern": VERSION_PATTERN},
    }


@dataclass(frozen=True, slots=True)
class Pinned:
    """The version that answers a request and how responses name it."""

    served: ServedModel
    ref: dict[str, str]  # name, registered_name, version and, when pinned by alias, alias
    routed: bool = False  # chosen by the service (champion or canary), not pinned by the client


def model_ref(served: ServedModel, alias: str | None) -> dict[str, str]:
    """How a response names the version that computed it."""
    ref = {
        "name": served.spec.name,
        "registered_name": served.spec.registered_name,
        "version": served.version,
    }
    if alias:
        ref["alias"] = alias
    return ref


def _estimated_bytes(model: Any) -> int:
    """Memory a loaded model holds, estimated by its pickled size (arrays dominate both).

    A compiled form does not pickle; the scikit-learn pipeline it keeps stands for it.
    """
    for candidate in (model, getattr(model, "pipeline", None)):
        if candidate is None:
            continue
        try:
            return len(pickle.dumps(candidate, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # not picklable: try what it wraps
            continue
    return 0


def _failure(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


class VersionCache:
    """Resolves a request's pin to a loaded version; one per worker, next to the ModelCache."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        champion: Callable[[str], ServedModel | None],
        max_versions: int = 4,
        max_bytes: int = 256 * 1024 * 1024,
        alias_seconds: float = 5.0,
        registry: ModuleType | Any = core_registry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self._champion = champion  # the hot-swapped champion of a model, read per request
        self.max_versions = max_versions
        self.max_bytes = max_bytes
        self.alias_seconds = alias_seconds  # how stale @previous/@challenger may be, like @champion
        self.registry = registry
        self._clock = clock
        self._lock = threading.RLock()
        self._loaded: OrderedDict[tuple[str, str], tuple[ServedModel, int]] = OrderedDict()
        self._bytes = 0
        self._refused: dict[tuple[str, str], str] = {}  # -> reason of the 409
        self._retry_at: dict[tuple[str, str], tuple[float, str]] = {}  # failed loads
        self._aliases: dict[tuple[str, str], tuple[float, str | None]] = {}

    # -- request path -------------------------------------------------------------------------
    def get(self, spec: ModelSpec, pin: str | None) -> Pinned:
        """The version answering a request that pins `pin` (None: the champion).

        Raises ApiError 404 (no such version), 409 (failed validation) or 503 (not loadable
        now).
        """
        if pin is None or pin == ALIAS_CHAMPION:
            served = self._champion(spec.name)  # read once: one version answers the request
            if served is None:
                raise ApiError(503, f"Model {spec.name} is not loaded yet; retry shortly.")
            return Pinned(served, served.ref)
        if pin in PINNABLE_ALIASES:
            served = self._version(spec, self._resolve_alias(spec, pin))
            return Pinned(served, model_ref(served, pin))
        if not _NUMBER.fullmatch(pin):
            raise ApiError(404, self._unknown(spec, pin))
        served = self._version(spec, pin)
        return Pinned(served, model_ref(served, None))

    @staticmethod
    def _unknown(spec: ModelSpec, pin: str) -> str:
        shown = pin if len(pin) <= 40 else pin[:40] + "..."
        return (
            f"{spec.registered_name} has no version {shown!r}: pin a registered version number "
            f"or one of {', '.join(PINNABLE_ALIASES)}."
        )

    def _resolve_alias(self, spec: ModelSpec, alias: str) -> str:
        key = (spec.name, alias)
        now = self._clock()
        cached = self._aliases.get(key)
        if cached is not None and cached[0] > now:
            number = cached[1]
        else:
            try:
                info = self.registry.get_alias(spec.registered_name, alias)
            except Exception as exc:
                log.warning("resolving %s@%s failed: %s", spec.registered_name, alias, exc)
                raise ApiError(
                    503, f"The model registry cannot resolve @{alias} now; retry shortly."
                ) from None
            number = info.version if info is not None else None
            self._aliases[key] = (now + self.alias_seconds, number)
        if number is None:
            raise ApiError(404, f"{spec.registered_name} has no @{alias} version.")
        return number

    def _version(self, spec: ModelSpec, number: str) -> ServedModel:
        champion = self._champion(spec.name)
        key = (spec.name, number)
        if champion is not None and champion.version == number:
            if key in self._loaded:  # pinned before it was promoted: one copy is enough
                self._drop(key)
            return champion  # the hot-swapped record: never loaded twice
        with self._lock:
            hit = self._loaded.get(key)
            if hit is not None:
                self._loaded.move_to_end(key)
                return hit[0]
            reason = self._refused.get(key)
            if reason is not None:
                raise ApiError(409, reason)
            retry = self._retry_at.get(key)
            if retry is not None and retry[0] > self._clock():
                raise ApiError(503, retry[1])
            # Loading holds the lock: a second request for the same version waits for this
            # load instead of starting its own (sync workers serve one request at a time).
            return self._load(spec, number)

    # -- loading ------------------------------------------------------------------------------
    def _load(self, spec: ModelSpec, number: str) -> ServedModel:
        key = (spec.name, number)
        name = spec.registered_name
        started = time.perf_counter()
        try:
            info = self.registry.get_version(name, number)
            report = self.registry.load_validation_report(name, number)
        except core_registry.NotFound:
            raise ApiError(404, self._unknown(spec, number)) from None
        except Exception as exc:
            log.warning("registry lookup of %s version %s failed: %s", name, number, exc)
            raise ApiError(503, "The model registry cannot answer now; retry shortly.") from None
        refusal = self._validation_refusal(spec, number, report)
        if refusal is not None:
            return self._refuse(key, refusal)
        try:
            # As the champion is loaded: its serving form, warmed and checked.
            served = load_served_model(self.registry, spec, info)
        except ModelLoadError as exc:
            return self._refuse(
                key, f"Version {number} of {name} failed validation: the load-time check: {exc}"
            )
        except Exception as exc:
            message = f"Version {number} of {name} could not be loaded; retry later."
            self._retry_at[key] = (self._clock() + RETRY_SECONDS, message)
            log.error("loading pinned %s version %s failed: %s", name, number, _failure(exc))
            raise ApiError(503, message) from None
        size = _estimated_bytes(served.model)
        self._retry_at.pop(key, None)
        self._keep(key, served, size)
        log.info(
            "pinned %s version %s loaded in %.2fs (%.1f MB)",
            name,
            number,
            time.perf_counter() - started,
            size / 1e6,
        )
        return served

    @staticmethod
    def _validation_refusal(spec: ModelSpec, number: str, report: Any) -> str | None:
        name = spec.registered_name
        if report is None:
            return (
                f"Version {number} of {name} failed validation: it has no validation report "
                "(it was not registered by the pipeline), so it is never served."
            )
        if report.get("passed") is True:
            return None
        failed = [
            str(check.get("gate"))
            for check in report.get("checks") or []
            if isinstance(check, dict) and not check.get("passed")
        ]
        gates = f"gate(s) {', '.join(failed)}" if failed else "its validation report"
        return f"Version {number} of {name} failed validation: {gates} did not pass."

    def _refuse(self, key: tuple[str, str], reason: str) -> ServedModel:
        self._refused[key] = reason
        log.warning("refusing pinned version: %s", reason)
        raise ApiError(409, reason)

    def _keep(self, key: tuple[str, str], served: ServedModel, size: int) -> None:
        if size > self.max_bytes:
            # Serves this request only: kept, it would evict everything and still not fit.
            log.warning("pinned %s version %s (%d bytes) exceeds the budget", *key, size)
            return
        self._loaded[key] = (served, size)
        self._bytes += size
        while len(self._loaded) > self.max_versions or self._bytes > self.max_bytes:
            old_key = next(iter(self._loaded))
            self._drop(old_key)
            log.info("evicted pinned %s version %s (least recently used)", *old_key)

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            entry = self._loaded.pop(key, None)
            if entry is not None:
                self._bytes -= entry[1]

    # -- introspection ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Loaded pinned versions, most recently used last, and the memory they hold."""
        with self._lock:
            return {
                "versions": [f"{model}:{version}" for model, version in self._loaded],
                "bytes": self._bytes,
                "max_versions": self.max_versions,
                "max_bytes": self.max_bytes,
            }
