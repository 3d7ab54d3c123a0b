"""Per-process state of the app: the model cache, the prediction log writer, the database engine.

Nothing here runs at import or in create_app: the background threads start in the serving
process (gunicorn's post_fork, or lazily on the first request), so models are never loaded
before a fork, and they restart themselves when they find they were inherited through a fork.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy.engine import Engine

from app.errors import ApiError
from app.model_cache import ModelCache
from app.shadow import ShadowScorer
from app.traffic import Traffic
from app.version_cache import Pinned, VersionCache, model_ref
from core import db, registry
from core.db import make_engine, redact
from core.prediction_log import PredictionLogWriter
from core.specs import ALIAS_CHALLENGER, MODEL_SPECS, ModelSpec

log = logging.getLogger(__name__)

EXTENSION_KEY = "runtime"


def freeze_gc() -> None:
    """Move every object alive now (modules, app, models) out of the collector's reach.

    A full collection over the ~350k objects of Flask + scikit-learn + MLflow takes ~120 ms and
    would stall whichever request triggers it; frozen objects are never scanned again (they
    are still freed by reference counting).
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "froze %d objects out of the garbage collector in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


class Runtime:
    """Model cache, prediction log writer and database engine of one app in one process."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.tracking_uri: str = config["MLFLOW_TRACKING_URI"]
        self.database_url: str = config["DATABASE_URL"]
        self.refresh_seconds: float = config["MODEL_REFRESH_SECONDS"]
        self._log_enabled: bool = config["PREDICTION_LOG_ENABLED"]
        self._log_options = {
            "flush_seconds": config["PREDICTION_LOG_FLUSH_SECONDS"],
            "flush_rows": config["PREDICTION_LOG_FLUSH_ROWS"],
            "max_pending_rows": config["PREDICTION_LOG_MAX_PENDING_ROWS"],
            "block_seconds": config["PREDICTION_LOG_BLOCK_SECONDS"],
        }
        self._pinned_limits = {
            "max_versions": config["PINNED_VERSIONS_MAX"],
            "max_bytes": int(config["PINNED_VERSIONS_MAX_MB"] * 1024 * 1024),
        }
        self._shadow_options = {
            "share": config["SHADOW_SHARE"],
            "max_rows": config["SHADOW_QUEUE_MAX_ROWS"],
        }
        self._new_services()
        self.prediction_log: PredictionLogWriter | None = None
        self._engine: Engine | None = None
        self._engine_pid: int | None = None
        self._started_pid: int | None = None
        self._lock = threading.Lock()

    def _new_services(self) -> None:
        """The model cache, pinned versions, routing and shadow scorer of this process."""
        self.traffic = Traffic(
            MODEL_SPECS.values(), prepare=lambda spec, v: self.versions.get(spec, v)
        )
        self.cache = self._new_cache()
        self.versions = self._new_versions()
        self.shadow = ShadowScorer(
            self.traffic, self.versions.get, self.database, **self._shadow_options
        )

    def _new_cache(self) -> ModelCache:
        return ModelCache(
            MODEL_SPECS.values(),
            refresh_seconds=self.refresh_seconds,
            on_first_ready=freeze_gc,
            after_refresh=self.traffic.refresh,
        )

    def _new_versions(self) -> VersionCache:
        # Reads the champion through self.cache at each request: it is replaced after a fork.
        return VersionCache(
            MODEL_SPECS.values(),
            champion=lambda name: self.cache.get(name),
            alias_seconds=self.refresh_seconds,
            **self._pinned_limits,
        )

    @property
    def started(self) -> bool:
        """True when the background threads run in this process."""
        return self._started_pid == os.getpid()

    @property
    def engine(self) -> Engine:
        """The application database engine, created on first use in this process."""
        pid = os.getpid()
        if self._engine is None or self._engine_pid != pid:
            with self._lock:
                if self._engine is None or self._engine_pid != pid:
                    if self._engine is not None:
                        # Inherited through fork: drop the parent's pooled connections without
                        # closing them (they belong to the parent).
                        self._engine.dispose(close=False)
                    self._engine = make_engine(self.database_url)
                    self._engine_pid = pid
        return self._engine

    def database(self) -> Engine:
        """The engine, with every application table created (checked once per engine)."""
        engine = self.engine
        db.ensure_schema(engine)
        return engine

    def start(self) -> None:
        """Start the refresher and the log writer in this process (idempotent, fork-aware)."""
        pid = os.getpid()
        if self._started_pid == pid:
            return
        with self._lock:
            if self._started_pid == pid:
                return
            # Read-only use: a missing SQLite registry is reported, never created empty.
            registry.configure(self.tracking_uri, must_exist=True)
            if self._started_pid is not None:
                # Threads do not survive fork: build fresh objects rather than reuse state
                # copied from the parent mid-flight.
                self._new_services()
                self.prediction_log = None
            self._started_pid = pid
        if self._log_enabled and self.prediction_log is None:
            self.prediction_log = PredictionLogWriter(
                self.engine, MODEL_SPECS.values(), **self._log_options
            )
        if self.prediction_log is not None:
            self.prediction_log.start()
        self.cache.start()
        self.shadow.start()
        log.info(
            "services started (pid %d): registry %s, prediction log %s",
            pid,
            _safe_uri(self.tracking_uri),
            _safe_uri(self.database_url) if self._log_enabled else "disabled",
        )

    def stop(self) -> None:
        """Flush the prediction log and stop the background threads (graceful shutdown)."""
        self.shadow.stop()
        if self.prediction_log is not None:
            self.prediction_log.close()
        self.cache.stop()

    def route(self, spec: ModelSpec, pin: str | None, key: str) -> Pinned:
        """The version answering a request: the one it pins; else the champion, or the
        challenger for the canary's share of routing keys. A challenger that cannot answer
        now leaves the champion answering: a canary never fails a request."""
        canary = self.traffic.canary(spec.name) if pin is None else None
        if canary is not None and self.traffic.to_challenger(spec, key):
            try:
                # By number: the canary names the version, and no registry call is made here.
                served = self.versions.get(spec, canary.version).served
            except ApiError as exc:
                log.warning("canary of %s: the challenger cannot answer: %s", spec.name, exc)
            else:
                return Pinned(served, model_ref(served, ALIAS_CHALLENGER), routed=True)
        pinned = self.versions.get(spec, pin)
        return Pinned(pinned.served, pinned.ref, routed=True) if pin is None else pinned


def _safe_uri(uri: str) -> str:
    try:
        return redact(uri)
    except Exception:  # not a SQLAlchemy URL: show its scheme only
        return uri.split("://", 1)[0] + "://..."


def init_runtime(app: Flask) -> Runtime:
    """Attach a (not yet started) Runtime to app."""
    runtime = Runtime(app.config)
    app.extensions[EXTENSION_KEY] = runtime
    if app.config["START_SERVICES_ON_FIRST_REQUEST"]:

        @app.before_request
        def _start_runtime() -> None:
            if not runtime.started:
                runtime.start()

    return runtime


def get_runtime(app: Flask | None = None) -> Runtime:
    """The Runtime of app (default: the current app)."""
    return (app or current_app).extensions[EXTENSION_KEY]
