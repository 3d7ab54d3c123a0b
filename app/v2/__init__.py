"""Open Inference Protocol V2 over REST: /v2/... (metadata, health, inference)."""

from app.v2.routes import blp

__all__ = ["blp"]
