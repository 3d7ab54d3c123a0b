"""GET /models/info, GET /models/<name>, admin POST /models/<name>/promote and /rollback."""

from app.models_api.routes import blp

__all__ = ["blp"]
