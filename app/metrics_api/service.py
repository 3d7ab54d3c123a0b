"""The scrape: HTTP and project metrics summed over gunicorn workers, and the processes."""

from __future__ import annotations

from flask import Response, current_app, request

from app import process_metrics


def exposition() -> Response:
    """Every metric in the format the scraper asks for (Prometheus text or OpenMetrics)."""
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
