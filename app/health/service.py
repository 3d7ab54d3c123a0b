"""What the health endpoints report about this worker: models, prediction log, broker."""

from __future__ import annotations

import os
import time
from typing import Any

from flask import current_app

from app.errors import ApiError
from app.runtime import get_runtime
from core.broker import broker_ok


def prediction_log_check() -> dict[str, Any]:
    """The prediction log writer's state (disabled, ok or error) and counters."""
    writer = get_runtime().prediction_log
    if writer is None:
        return {"status": "disabled"}
    last_flush = writer.last_flush_at
    return {
        "status": "error" if writer.last_error else "ok",
        "pending_rows": writer.pending_rows,
        "rows_written": writer.rows_written,
        "rows_dropped": writer.rows_dropped,
        "last_flush_age_seconds": round(time.time() - last_flush, 3) if last_flush else None,
        "last_error": writer.last_error,
    }


def broker_check() -> dict[str, Any]:
    """Whether the Redis broker answers (retraining needs it, predictions do not)."""
    if broker_ok(current_app.config["REDIS_URL"]):
        return {"status": "ok"}
    return {"status": "error", "message": "Redis broker unreachable: POST /retrain answers 503."}


def overall() -> tuple[dict[str, Any], int]:
    """GET /health: ok or degraded with every check; 503 only when no model can serve."""
    runtime = get_runtime()
    models = runtime.cache.status()
    for name, model in models.items():
        # What this worker routes to @challenger now (each worker applies a change on its tick).
        canary = runtime.traffic.canary(name)
        model["challenger"] = runtime.traffic.challenger(name)
        model["canary"] = {"share": canary.share, "version": canary.version} if canary else None
    plog = prediction_log_check()
    broker = broker_check()
    serving = [name for name, m in models.items() if m["status"] == "ok"]
    # A model with an error is not following its @champion (failed load, registry down).
    healthy = (
        len(serving) == len(models)
        and not any(m["last_error"] for m in models.values())
        and plog["status"] in ("ok", "disabled")
        and broker["status"] == "ok"
    )
    body = {
        "status": "ok" if healthy else "degraded",
        "checks": {
            "models": models,
            "prediction_log": plog,
            "broker": broker,
            "process": {"pid": os.getpid()},
        },
    }
    return body, (200 if serving else 503)


def readiness() -> dict[str, Any]:
    """GET /health/ready: every model loaded and warmed in this worker, else 503 naming why."""
    cache = get_runtime().cache
    status = cache.status()
    if not cache.ready():
        missing = {
            name: [m["last_error"] or "not loaded yet"]
            for name, m in status.items()
            if m["status"] != "ok"
        }
        raise ApiError(503, "Not ready: models not loaded yet.", missing)
    return {"status": "ready", "models": {name: m["version"] for name, m in status.items()}}
