"""Liveness, readiness and an overall health summary of this worker."""

from __future__ import annotations

import os
import time
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from app.errors import ApiError
from app.health.schemas import HealthSchema, LiveSchema, ReadySchema
from app.services import get_services
from workers.broker import broker_ok

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes for orchestrators.")


def _prediction_log_check() -> dict[str, Any]:
    writer = get_services().prediction_log
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


def _broker_check() -> dict[str, Any]:
    # Retraining needs the broker; predictions do not, so a broker outage is only "degraded".
    celery_app = current_app.extensions.get("celery")
    url = celery_app.conf.broker_url if celery_app is not None else None
    if broker_ok(url):
        return {"status": "ok"}
    return {"status": "error", "message": "Redis broker unreachable: POST /retrain answers 503."}


@blp.route("")
class Health(MethodView):
    """Overall health."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="No model can serve.")
    def get(self) -> tuple[dict[str, Any], int]:
        """Status of the models, the prediction log and the retrain broker, in this worker.

        "degraded" when a model is missing or cannot follow its champion (a failed load, the
        registry unreachable), the prediction log cannot write or Redis does not answer; 503
        only when no model can serve at all.
        """
        models = get_services().cache.status()
        plog = _prediction_log_check()
        broker = _broker_check()
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


@blp.route("/live")
class Live(MethodView):
    """Liveness."""

    @blp.response(200, LiveSchema)
    def get(self) -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "alive"}


@blp.route("/ready")
class Ready(MethodView):
    """Readiness."""

    @blp.response(200, ReadySchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self) -> dict[str, Any]:
        """Ready when every model is loaded and warmed in this worker; 503 otherwise."""
        cache = get_services().cache
        status = cache.status()
        if not cache.ready():
            missing = {
                name: [m["last_error"] or "not loaded yet"]
                for name, m in status.items()
                if m["status"] != "ok"
            }
            raise ApiError(503, "Not ready: models not loaded yet.", missing)
        return {"status": "ready", "models": {name: m["version"] for name, m in status.items()}}
