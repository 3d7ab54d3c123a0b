"""GET /predictions?model=&limit= (admin): what was predicted, newest first."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.prediction_log_api.schemas import PredictionListSchema, PredictionQuerySchema
from app.runtime import get_runtime
from core import prediction_log

blp = Blueprint(
    "predictions", __name__, url_prefix="/predictions", description="The prediction log (admin)."
)


@blp.route("")
class Predictions(MethodView):
    """Recent prediction log entries."""

    decorators = [admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.arguments(PredictionQuerySchema, location="query")
    @blp.response(200, PredictionListSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Newest logged rows first, optionally for one model.

        Rows reach the database within PREDICTION_LOG_FLUSH_SECONDS of being answered.
        """
        # The tables exist even before this worker's first flush: an empty log is a 200.
        engine = get_runtime().database()
        rows = prediction_log.recent(engine, model=query.get("model"), limit=query["limit"])
        return {"predictions": rows, "count": len(rows)}
