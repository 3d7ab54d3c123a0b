"""Admin GET /predictions: recent prediction log entries."""

from app.prediction_log_api.routes import blp

__all__ = ["blp"]
