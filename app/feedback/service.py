"""Recording ground-truth labels for the API: wait for buffered predictions, explain refusals.

Predictions reach the database up to PREDICTION_LOG_FLUSH_SECONDS after being answered, by
whichever worker answered them, so a label sent at once may arrive before its row: recording
flushes this worker's log and retries for a bounded time before it calls a label unknown.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from flask import current_app, g
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.errors import ApiError, validation_error
from app.runtime import get_runtime
from core import feedback
from core.feedback import Label, Outcome
from core.metrics import MODEL_FEEDBACK
from core.specs import MODEL_SPECS

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 2.0  # the longest a request waits for other workers' prediction logs


def record(labels: Sequence[Label], single: bool) -> dict[str, Any]:
    """Store the labels (all or nothing) and describe them; ApiError naming every refusal."""
    max_rows = current_app.config["MAX_BATCH_ROWS"]
    if len(labels) > max_rows:
        raise validation_error({"labels": [f"Longer than maximum length {max_rows}."]})
    g.rq.rows = len(labels)
    outcome = record_with_wait(get_runtime().database(), labels)
    if outcome.missing or outcome.invalid or outcome.conflicts:
        raise _error(labels, single, outcome)
    _count(outcome)
    models = {row["model"] for row in [*outcome.accepted, *outcome.duplicates]}
    if len(models) == 1:
        g.rq.model = models.pop()
    return {
        "accepted": len(outcome.accepted),
        "duplicates": len(outcome.duplicates),
        "labels": _in_request_order(labels, outcome),
    }


def _wait_budget() -> float:
    # Another worker writes its buffered predictions every PREDICTION_LOG_FLUSH_SECONDS: two
    # intervals plus a margin covers a flush that was just missed and the write itself.
    flush_seconds = float(current_app.config["PREDICTION_LOG_FLUSH_SECONDS"])
    return min(2 * flush_seconds + 0.25, MAX_WAIT_SECONDS)


def _flush_own_log() -> None:
    writer = get_runtime().prediction_log
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
    """feedback.record() the labels; on a miss, flush and wait a bounded time for the log."""
    outcome = _record_once(engine, labels)
    if not outcome.missing or get_runtime().prediction_log is None:
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
    logging_on = get_runtime().prediction_log is not None
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
