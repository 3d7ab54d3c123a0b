"""POST /feedback (admin): ground-truth labels for logged predictions."""

from app.feedback.routes import blp

__all__ = ["blp"]
