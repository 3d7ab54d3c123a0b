"""POST /feedback (admin): ground-truth labels for logged predictions."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from flask import current_app, g
from flask.views import MethodView
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.errors import ApiError, validation_error
from app.feedback.schemas import (
    REQUEST_BODY_JSON_SCHEMA,
    FeedbackRequestSchema,
    FeedbackResultSchema,
)
from app.json_body import json_required
from app.services import get_services
from core import db, feedback
from core.feedback import Label, Outcome
from core.metrics import MODEL_FEEDBACK
from core.specs import MODEL_SPECS

log = logging.getLogger(__name__)

blp = Blueprint(
    "feedback",
    __name__,
    url_prefix="/feedback",
    description="Ground truth for logged predictions: live model quality and training data.",
)

MAX_WAIT_SECONDS = 2.0  # the longest a request waits for other workers' prediction logs
_EXAMPLE_SINGLE = {"request_id": "4f1c2a9e0b7d4c55", "row_index": 0, "actual": 4.2}
_EXAMPLE_BATCH = {
    "labels": [
        {"request_id": "4f1c2a9e0b7d4c55", "actual": 4.2},
        {"request_id": "9d0e7b1a2c3f4e5d", "row_index": 1, "actual": "virginica"},
    ]
}


def feedback_engine() -> Engine:
    """The application database, with the feedback and report tables created if missing."""
    engine = get_services().engine
    db.ensure_schema(engine)  # every missing application table, once per engine
    return engine


def _wait_budget() -> float:
    # Another worker writes its buffered predictions every PREDICTION_LOG_FLUSH_SECONDS: two
    # intervals plus a margin covers a flush that was just missed and the write itself.
    flush_seconds = float(current_app.config["PREDICTION_LOG_FLUSH_SECONDS"])
    return min(2 * flush_seconds + 0.25, MAX_WAIT_SECONDS)


def _flush_own_log() -> None:
    writer = get_services().prediction_log
    if writer is None:
        return
    try:
        writer.flush()
    except Exception:  # the periodic flusher retries; the lookup below then just misses
        log.exception("flushing the prediction log for feedback failed")


def _record_once(engine: Engine, labels: Sequence[Label]) -> Outcome:
    try:
        return feedback.record(engine, labels, MODEL_SPECS)
    except IntegrityError:
        # Another worker stored a label for the same row between our check and insert: the
        # second look sees it and answers duplicate or conflict.
        return feedback.record(engine, labels, MODEL_SPECS)


def record_with_wait(engine: Engine, labels: Sequence[Label]) -> Outcome:
    """record() the labels; on a miss, flush and wait a bounded time for buffered predictions.

    Predictions reach the database up to PREDICTION_LOG_FLUSH_SECONDS after being answered, by
    whichever worker answered them, so a label sent at once may arrive before its row.
    """
    outcome = _record_once(engine, labels)
    if not outcome.missing or get_services().prediction_log is None:
        return outcome
    deadline = time.monotonic() + _wait_budget()
    _flush_own_log()  # this worker's rows are written now, without waiting for its flusher
    pause = 0.02
    while True:
        outcome = _record_once(engine, labels)
        remaining = deadline - time.monotonic()
        if not outcome.missing or remaining <= 0:
            return outcome
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.2)


def _capitalized(message: str) -> str:
    return message[:1].upper() + message[1:]


def _field_errors(labels: Sequence[Label], outcome: Outcome) -> dict[int, dict[str, list[str]]]:
    logging_on = get_services().prediction_log is not None
    errors: dict[int, dict[str, list[str]]] = {}
    for i in outcome.missing:
        label = labels[i]
        message = (
            f"No logged prediction has request_id {label.request_id!r} "
            f"and row_index {label.row_index}."
        )
        if not logging_on:
            message += " The prediction log is disabled on this server (PREDICTION_LOG_ENABLED)."
        errors[i] = {"request_id": [message]}
    for i, message in outcome.invalid.items():
        errors[i] = {"actual": [_capitalized(message) + "."]}
    for i, message in outcome.conflicts.items():
        errors[i] = {"actual": [_capitalized(message) + "; a stored label cannot be changed."]}
    return errors


def _error(labels: Sequence[Label], single: bool, outcome: Outcome) -> ApiError:
    """One error for every problem found; the status is the first kind that applies."""
    problems = []
    if outcome.missing:
        problems.append(f"{len(outcome.missing)} match no logged prediction")
    if outcome.invalid:
        problems.append(f"{len(outcome.invalid)} have an actual value that does not fit the model")
    if outcome.conflicts:
        problems.append(f"{len(outcome.conflicts)} contradict a stored label")
    code = 404 if outcome.missing else 422 if outcome.invalid else 409
    by_position = _field_errors(labels, outcome)
    if single:
        errors: dict[str, Any] = by_position[0]
        message = {
            404: "No logged prediction matches this label; nothing was stored.",
            422: "The actual value does not fit the model; nothing was stored.",
            409: "This prediction already has a different label; nothing was stored.",
        }[code]
    else:
        errors = {"labels": dict(sorted(by_position.items()))}
        message = f"Of {len(labels)} labels, {', '.join(problems)}; nothing was stored."
    return ApiError(code, message, errors)


def _in_request_order(labels: Sequence[Label], outcome: Outcome) -> list[dict[str, Any]]:
    position: dict[tuple[str, int], int] = {}
    for i, label in enumerate(labels):
        position.setdefault((label.request_id, label.row_index), i)
    rows = sorted(
        [*outcome.accepted, *outcome.duplicates],
        key=lambda row: position[(row["request_id"], row["row_index"])],
    )
    for row in rows:
        # The log stores a classifier's output with its probabilities; the label compares.
        if isinstance(row["prediction"], dict):
            row["prediction"] = row["prediction"].get("label")
    return rows


def _count(outcome: Outcome) -> None:
    for outcome_name, rows in (("accepted", outcome.accepted), ("duplicate", outcome.duplicates)):
        for model, n in Counter(row["model"] for row in rows).items():
            MODEL_FEEDBACK.labels(model, outcome_name).inc(n)


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
        labels: list[Label] = body["labels"]
        max_rows = get_services().max_batch_rows
        if len(labels) > max_rows:
            raise validation_error({"labels": [f"Longer than maximum length {max_rows}."]})
        g.rq.rows = len(labels)
        try:
            outcome = record_with_wait(feedback_engine(), labels)
        except SQLAlchemyError:
            log.exception("storing feedback failed")
            raise ApiError(503, "The feedback database is unavailable; retry later.") from None
        if outcome.missing or outcome.invalid or outcome.conflicts:
            raise _error(labels, body["single"], outcome)
        _count(outcome)
        models = {row["model"] for row in [*outcome.accepted, *outcome.duplicates]}
        if len(models) == 1:
            g.rq.model = models.pop()
        return {
            "accepted": len(outcome.accepted),
            "duplicates": len(outcome.duplicates),
            "labels": _in_request_order(labels, outcome),
        }
