"""Prometheus exposition of the HTTP and project metrics, summed over gunicorn workers."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from app.blueprint import Blueprint
from app.metrics_api import service

blp = Blueprint("metrics", __name__, url_prefix="/metrics", description="Prometheus metrics.")

_DOC = {
    "responses": {
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
}


@blp.route("")
class Metrics(MethodView):
    """Scrape endpoint."""

    @blp.doc(**_DOC)
    def get(self) -> Response:
        """All metrics in the Prometheus text format."""
        return service.exposition()


@blp.route("/prometheus")
class MetricsPrometheus(MethodView):
    """Alias of /metrics."""

    @blp.doc(**_DOC)
    def get(self) -> Response:
        """Same as /metrics."""
        return service.exposition()
