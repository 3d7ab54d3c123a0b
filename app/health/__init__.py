"""GET /health, /health/live, /health/ready."""

from app.health.routes import blp

__all__ = ["blp"]
