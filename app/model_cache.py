"""Per-worker cache of the served models, hot-swapped when the @champion alias moves.

Each worker holds one immutable ServedModel per model. A background refresher checks the alias
every MODEL_REFRESH_SECONDS; a new version is loaded and warmed with a real prediction before
it replaces the old record in a single assignment. A request reads the record once, so it is
answered by exactly one version, and a failed load leaves the old version serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import numpy as np

from core import compiled, metrics
from core import registry as core_registry
from core.conformal import CONFORMAL_FILE, Intervals
from core.registry import VersionInfo
from core.specs import ALIAS_CHAMPION, ModelSpec

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 300.0  # longest wait before trying a version that failed to load again


class ModelLoadError(Exception):
    """A registered version could not be loaded or failed its warm-up check."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One loaded, warmed model version; never mutated after creation."""

    spec: ModelSpec
    version: str
    model: Any  # a scikit-learn pipeline, or its compiled form (core.compiled.CompiledModel)
    info: VersionInfo
    algorithm: str
    loaded_at: str
    runtime: str = compiled.RUNTIME_SKLEARN  # what computes predictions (core.compiled)
    runtime_reason: str | None = None  # why scikit-learn does, when it does
    classes: tuple[str, ...] = ()
    has_proba: bool = False
    # Column order mapping model.classes_ -> spec.classes for the prediction log; None when
    # the model already uses the spec's order (the usual case).
    to_spec_columns: np.ndarray | None = None
    to_spec_labels: np.ndarray | None = None
    # What responses say about the model; built once so requests only reference it.
    ref: dict[str, str] = field(default_factory=dict)
    # Metric children for this version, so the request path skips the labels() lookups.
    predictions_counter: Any = None
    inference_histogram: Any = None
    value_histogram: Any = None
    class_counters: tuple[Any, ...] = ()
    # Conformal intervals of a regression version (its conformal.json); None when it has none.
    intervals: Intervals | None = None

    def describe(self) -> dict[str, Any]:
        """The /models/info view of this version."""
        return {
            "name": self.spec.name,
            "registered_name": self.spec.registered_name,
            "version": self.version,
            "alias": ALIAS_CHAMPION,
            "run_id": self.info.run_id,
            "algorithm": self.algorithm,
            "runtime": self.runtime,
            "runtime_reason": self.runtime_reason,
            "intervals": self.intervals.describe() if self.intervals else None,
            "metrics": self.info.tag_json("metrics", {}),
            "params": self.info.tag_json("params", {}),
            "features": self.spec.feature_names,
            "classes": list(self.classes) if self.classes else None,
            "unit": self.spec.unit,
            "data_hash": self.info.tags.get("data_hash"),
            "git_commit": self.info.tags.get("git_commit"),
            "pipeline_run_id": self.info.tags.get("pipeline_run_id"),
            "loaded_at": self.loaded_at,
        }


@dataclass(slots=True)
class _ModelState:
    """What the refresher knows about one model besides the record being served."""

    last_check_at: float | None = None
    last_error: str | None = None
    failed_version: str | None = None
    failures: int = 0
    retry_at: float = 0.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _reason(exc: BaseException) -> str:
    """Exception type and the first line of its message (SQLAlchemy appends the SQL)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _estimator_name(model: Any) -> str:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return type(final).__name__


def probe_rows(spec: ModelSpec) -> np.ndarray:
    """Rows a loaded version is warmed and checked with: the example record, and two more."""
    x = np.asarray([[spec.example_row()[name] for name in spec.feature_names]], dtype=np.float64)
    return np.vstack([x, x * 0.5, x * 2.0])


def load_served_model(
    registry: ModuleType | Any, spec: ModelSpec, info: VersionInfo
) -> ServedModel:
    """Load a registered version in the form that serves it (its compiled form when it has one
    that loads and agrees with scikit-learn on the probe rows), warmed and checked."""
    pipeline, files = registry.load_model_and_files(spec.registered_name, info.version)
    serving = compiled.for_serving(spec.task, pipeline, files, info.tags, probe_rows(spec))
    return build_served_model(
        spec,
        info,
        serving.model,
        runtime=serving.runtime,
        runtime_reason=serving.reason,
        intervals=_intervals(spec, info, files.get(CONFORMAL_FILE)),
    )


def _intervals(spec: ModelSpec, info: VersionInfo, data: bytes | None) -> Intervals | None:
    """A regression version's intervals; None (and a warning) when its file is unusable: the
    version still serves point predictions."""
    if spec.task != "regression" or data is None:
        return None
    try:
        return Intervals.from_json(data)
    except ValueError as exc:
        log.warning("%s version %s: unusable %s: %s", spec.name, info.version, CONFORMAL_FILE, exc)
        return None


def build_served_model(
    spec: ModelSpec,
    info: VersionInfo,
    model: Any,
    runtime: str = compiled.RUNTIME_SKLEARN,
    runtime_reason: str | None = None,
    intervals: Intervals | None = None,
) -> ServedModel:
    """Warm model with spec's example row and check its outputs; ModelLoadError if unusable."""
    x = probe_rows(spec)[:1]
    n_in = getattr(model, "n_features_in_", len(spec.features))
    if n_in != len(spec.features):
        raise ModelLoadError(f"model expects {n_in} features, the spec has {len(spec.features)}")
    classes: tuple[str, ...] = ()
    has_proba = False
    try:
        if spec.task == "classification":
            classes = tuple(str(c) for c in getattr(model, "classes_", ()))
            if set(classes) != set(spec.classes):
                raise ModelLoadError(
                    f"model classes {list(classes)} differ from the spec's {list(spec.classes)}"
                )
            has_proba = hasattr(model, "predict_proba")
            out = model.predict_proba(x) if has_proba else model.predict(x)
            expected = (1, len(classes)) if has_proba else (1,)
        else:
            out = model.predict(x)
            expected = (1,)
    except ModelLoadError:
        raise
    except Exception as exc:  # any failure of the warm-up call rejects the model
        raise ModelLoadError(f"warm-up prediction failed: {type(exc).__name__}: {exc}") from exc
    out = np.asarray(out)
    if out.shape != expected:
        raise ModelLoadError(f"warm-up output has shape {out.shape}, expected {expected}")
    if out.dtype.kind in "fiu" and not np.all(np.isfinite(out)):
        raise ModelLoadError("warm-up prediction is not finite")

    algorithm = info.tags.get("algorithm") or _estimator_name(model)
    to_spec_columns = to_spec_labels = None
    if classes and classes != tuple(spec.classes):
        to_spec_columns = np.array([classes.index(c) for c in spec.classes])
        to_spec_labels = np.array([spec.classes.index(c) for c in classes])
    ref = {
        "name": spec.name,
        "registered_name": spec.registered_name,
        "version": info.version,
        "alias": ALIAS_CHAMPION,
    }
    return ServedModel(
        spec=spec,
        version=info.version,
        model=model,
        info=info,
        algorithm=algorithm,
        loaded_at=_now_iso(),
        runtime=runtime,
        runtime_reason=runtime_reason,
        classes=classes,
        has_proba=has_proba,
        to_spec_columns=to_spec_columns,
        to_spec_labels=to_spec_labels,
        ref=ref,
        predictions_counter=metrics.MODEL_PREDICTIONS.labels(spec.name, info.version),
        inference_histogram=metrics.MODEL_INFERENCE_SECONDS.labels(spec.name),
        value_histogram=(
            metrics.MODEL_PREDICTION_VALUE.labels(spec.name) if spec.task == "regression" else None
        ),
        class_counters=tuple(metrics.MODEL_PREDICTED_CLASS.labels(spec.name, c) for c in classes),
        intervals=intervals,
    )


class ModelCache:
    """Serves the current champion of every model and keeps it fresh in a background thread."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        refresh_seconds: float = 5.0,
        registry: ModuleType | Any = core_registry,
        on_first_ready: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        after_refresh: Callable[[], None] | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self._clock = clock  # check ages and retry back-off; tests inject a fake
        self.refresh_seconds = refresh_seconds
        self.registry = registry
        self._served: dict[str, ServedModel] = {}
        self._state = {name: _ModelState() for name in self.specs}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self._on_first_ready = on_first_ready
        self._after_refresh = after_refresh  # more per-tick reads (the canary routing)

    # -- request path -------------------------------------------------------------------------
    def get(self, name: str) -> ServedModel | None:
        """The record serving name right now (read once per request)."""
        return self._served.get(name)

    def ready(self) -> bool:
        """True once every model is loaded and warmed."""
        return all(name in self._served for name in self.specs)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per model: served version, when it loaded, the last check and the last error."""
        out = {}
        for name in self.specs:
            served = self._served.get(name)
            state = self._state[name]
            out[name] = {
                "status": "ok" if served else "unavailable",
                "version": served.version if served else None,
                "loaded_at": served.loaded_at if served else None,
                "last_check_age_seconds": (
                    round(self._clock() - state.last_check_at, 3)
                    if state.last_check_at is not None
                    else None
                ),
                "last_error": state.last_error,
            }
        return out

    # -- refresher ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the refresher thread (idempotent); its first pass loads every model."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="model-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the refresher thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def poke(self) -> None:
        """Check the registry now instead of at the next tick (after a promote in this worker)."""
        self._wake.set()

    def wait_ready(self, timeout: float) -> bool:
        """Block until ready() or timeout; returns ready()."""
        deadline = time.monotonic() + timeout
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ready()

    def _run(self) -> None:
        while not self._stop.is_set():
            for task in (self.refresh, self._after_refresh):
                try:
                    if task is not None:
                        task()
                except Exception:  # the refresher must never die
                    log.exception("model refresh pass failed")
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()

    def refresh(self) -> dict[str, str]:
        """Check every model's champion once, loading new versions; returns what happened."""
        with self._refresh_lock:
            was_ready = self.ready()
            outcome = {name: self._refresh_one(self.specs[name]) for name in self.specs}
            if not was_ready and self.ready() and self._on_first_ready is not None:
                callback, self._on_first_ready = self._on_first_ready, None
                callback()
            return outcome

    def _refresh_one(self, spec: ModelSpec) -> str:
        state = self._state[spec.name]
        try:
            info = self.registry.champion(spec.registered_name)
        except Exception as exc:  # registry outage: keep serving what we have
            state.last_error = f"registry: {_reason(exc)}"[:500]
            log.warning("champion lookup for %s failed: %s", spec.registered_name, exc)
            return "registry-error"
        state.last_check_at = self._clock()
        current = self._served.get(spec.name)
        if info is None:
            state.last_error = f"{spec.registered_name} has no @{ALIAS_CHAMPION} version"
            if current is None:
                log.warning("%s", state.last_error)
            return "no-champion"
        if current is not None and current.version == info.version:
            # Serving the champion: a version that failed earlier is no longer wanted (the alias
            # moved back), so its error must not linger in /health.
            state.failed_version, state.failures, state.last_error = None, 0, None
            return "unchanged"
        if state.failed_version == info.version and self._clock() < state.retry_at:
            return "backoff"
        return self._load(spec, info, current, state)

    def _load(
        self,
        spec: ModelSpec,
        info: VersionInfo,
        current: ServedModel | None,
        state: _ModelState,
    ) -> str:
        started = time.perf_counter()
        try:
            served = load_served_model(self.registry, spec, info)
        except Exception as exc:  # a bad version must not stop the old one serving
            if state.failed_version == info.version:
                state.failures += 1
            else:
                state.failed_version, state.failures = info.version, 1
            # Back off exponentially so a broken artifact is not reloaded every tick.
            delay = min(self.refresh_seconds * 2 ** (state.failures - 1), MAX_RETRY_SECONDS)
            state.retry_at = self._clock() + delay
            state.last_error = f"load of version {info.version} failed: {_reason(exc)}"[:500]
            metrics.MODEL_RELOADS.labels(spec.name, "failure").inc()
            log.error(
                "loading %s version %s failed; still serving %s (retry in %.0fs)",
                spec.registered_name,
                info.version,
                current.version if current else "nothing",
                delay,
                exc_info=True,
            )
            return "failure"
        # The swap: one dict assignment, atomic under the GIL; readers see old or new.
        self._served[spec.name] = served
        state.failed_version, state.failures, state.last_error = None, 0, None
        metrics.MODEL_RELOADS.labels(spec.name, "success").inc()
        if current is not None:
            metrics.MODEL_INFO.labels(
                spec.name, current.version, current.algorithm, current.runtime
            ).set(0)
        metrics.MODEL_INFO.labels(spec.name, served.version, served.algorithm, served.runtime).set(
            1
        )
        log.info(
            "serving %s version %s (was %s) with %s%s, loaded in %.2fs",
            spec.registered_name,
            served.version,
            current.version if current else "none",
            served.runtime,
            f" ({served.runtime_reason})" if served.runtime_reason else "",
            time.perf_counter() - started,
        )
        return "loaded"
