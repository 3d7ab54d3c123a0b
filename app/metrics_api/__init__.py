"""GET /metrics and /metrics/prometheus."""

from app.metrics_api.routes import blp

__all__ = ["blp"]
