"""Liveness, readiness and an overall health summary of this worker."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.blueprint import Blueprint
from app.health import service
from app.health.schemas import HealthSchema, LiveSchema, ReadySchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes for orchestrators.")


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
        return service.overall()


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
        return service.readiness()
