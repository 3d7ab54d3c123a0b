"""GET, admin PUT and DELETE /models/<name>/canary: a share of traffic to @challenger."""

from app.canary.routes import blp

__all__ = ["blp"]
