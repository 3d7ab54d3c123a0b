"""POST /feedback (admin): ground-truth labels for logged predictions."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.feedback import service
from app.feedback.schemas import (
    REQUEST_BODY_JSON_SCHEMA,
    FeedbackRequestSchema,
    FeedbackResultSchema,
)
from app.json_body import json_required

blp = Blueprint(
    "feedback",
    __name__,
    url_prefix="/feedback",
    description="Ground truth for logged predictions: live model quality and training data.",
)

_EXAMPLE_SINGLE = {"request_id": "4f1c2a9e0b7d4c55", "row_index": 0, "actual": 4.2}
_EXAMPLE_BATCH = {
    "labels": [
        {"request_id": "4f1c2a9e0b7d4c55", "actual": 4.2},
        {"request_id": "9d0e7b1a2c3f4e5d", "row_index": 1, "actual": "virginica"},
    ]
}


@blp.route("")
class Feedback(MethodView):
    """Labels for predictions."""

    # Outermost last: the token is checked first, then the content type, then the body.
    decorators = [json_required, admin_required]

    @blp.doc(
        security=[BEARER_AUTH],
        requestBody={
            "content": {"application/json": {"schema": REQUEST_BODY_JSON_SCHEMA}},
        },
    )
    @blp.arguments(
        FeedbackRequestSchema,
        examples={
            "single": {"summary": "one label", "value": _EXAMPLE_SINGLE},
            "batch": {"summary": "a batch", "value": _EXAMPLE_BATCH},
        },
    )
    @blp.response(200, FeedbackResultSchema)
    @blp.alt_response(400, response="BAD_REQUEST", description="Malformed JSON.")
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(
        404, response="NOT_FOUND", description="A label matches no logged prediction."
    )
    @blp.alt_response(409, response="CONFLICT", description="A row already has a different label.")
    @blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
    @blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Database unavailable.")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record the true outcome of logged predictions. Admin only (it becomes training data).

        A label names a prediction by the `request_id` of its response and the `row_index` of
        the row in a batch (default 0). `actual` is a number in 100k USD for housing and a class
        label for iris. Send one label, or up to MAX_BATCH_ROWS as `{"labels": [...]}`.

        One label per predicted row. Sending the same label again is idempotent: 200, counted
        in `duplicates`, nothing changes. A different label for a row that already has one is
        409: a stored label is never overwritten.

        All or nothing: if any label is unknown (404), does not fit its model (422) or
        conflicts (409), nothing is stored; errors name each label (by position in a batch).
        Predictions are logged within PREDICTION_LOG_FLUSH_SECONDS of being answered; a label
        sent sooner is held briefly until its prediction is logged.
        """
        return service.record(body["labels"], body["single"])
