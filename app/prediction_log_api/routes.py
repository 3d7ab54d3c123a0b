"""GET /predictions?model=&limit= (admin): what was predicted, newest first."""

from __future__ import annotations

import logging
from typing import Any

from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.errors import ApiError
from app.prediction_log_api.schemas import PredictionListSchema, PredictionQuerySchema
from app.services import get_services
from core import jobs, prediction_log

log = logging.getLogger(__name__)

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
        try:
            engine = get_services().engine
            # Before this worker's first flush the table may not exist yet: an empty log is a
            # 200 with no rows, not a 503.
            jobs.ensure_schema(engine)
            rows = prediction_log.recent(engine, model=query.get("model"), limit=query["limit"])
        except SQLAlchemyError:
            log.exception("reading the prediction log failed")
            raise ApiError(503, "The prediction log database is unavailable.") from None
        return {"predictions": rows, "count": len(rows)}
