"""Prometheus exposition of the HTTP and project metrics, summed over gunicorn workers."""

from __future__ import annotations

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app import process_metrics

blp = Blueprint("metrics", __name__, url_prefix="/metrics", description="Prometheus metrics.")

_DOC = {
    "responses": {
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
}


def _exposition() -> Response:
    exporter = current_app.extensions["prometheus_metrics"]
    # generate_metrics builds a MultiProcessCollector view when PROMETHEUS_MULTIPROC_DIR is set.
    body, content_type = exporter.generate_metrics(request.headers.get("Accept"))
    if isinstance(body, str):
        body = body.encode()
    if content_type.startswith("application/openmetrics-text"):
        # OpenMetrics (what Prometheus asks for) must end with "# EOF": insert before it.
        extra = process_metrics.exposition(openmetrics=True)
        body = body.removesuffix(b"# EOF\n") + extra + b"# EOF\n"
    else:
        body = body + process_metrics.exposition()
    return Response(body, status=200, headers={"Content-Type": content_type})


@blp.route("")
class Metrics(MethodView):
    """Scrape endpoint."""

    @blp.doc(**_DOC)
    def get(self) -> Response:
        """All metrics in the Prometheus text format."""
        return _exposition()


@blp.route("/prometheus")
class MetricsPrometheus(MethodView):
    """Alias of /metrics."""

    @blp.doc(**_DOC)
    def get(self) -> Response:
        """Same as /metrics."""
        return _exposition()
