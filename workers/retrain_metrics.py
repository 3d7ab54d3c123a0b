"""Recording retrain outcomes in the project metrics (defined in core.metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from core.metrics import (
    RETRAIN_DURATION_SECONDS,
    RETRAIN_JOBS,
    RETRAIN_LAST_SUCCESS,
    RETRAIN_STAGE,
)

PROMOTED = "promoted"
REJECTED = "rejected"
UP_TO_DATE = "up_to_date"
FAILED = "failed"


OUTCOMES = (PROMOTED, REJECTED, UP_TO_DATE, FAILED)


def initialise(models: Iterable[str]) -> None:
    """Export every model/outcome series at 0 from the start.

    Without it a series is born at 1 on its first job, and rate()/increase() never see that job.
    """
    for model in models:
        for label in OUTCOMES:
            RETRAIN_JOBS.labels(model=model, outcome=label)
        stage(model, None)


def outcome(result: dict[str, Any]) -> str:
    """The outcome label of one model's pipeline result."""
    if result.get("up_to_date"):
        return UP_TO_DATE
    return PROMOTED if result.get("promoted") else REJECTED


IDLE = "idle"
_current: dict[str, str] = {}


def stage(model: str, name: str | None) -> None:
    """Show the stage a model's retrain is in; None shows it idle."""
    name = name or IDLE
    previous = _current.get(model)
    if previous is not None and previous != name:
        RETRAIN_STAGE.labels(model=model, stage=previous).set(0)
    RETRAIN_STAGE.labels(model=model, stage=name).set(1)
    _current[model] = name


def record(outcomes: dict[str, str], seconds: float | None) -> None:
    """Count one finished job per model by outcome and observe its duration."""
    for model, label in outcomes.items():
        stage(model, None)
        RETRAIN_JOBS.labels(model=model, outcome=label).inc()
        if label != FAILED:
            RETRAIN_LAST_SUCCESS.labels(model=model).set(time.time())
        if seconds is not None:
            RETRAIN_DURATION_SECONDS.labels(model=model).observe(seconds)


def record_failure(models: Iterable[str], seconds: float | None) -> None:
    """Count a failed job for each of its models."""
    record(dict.fromkeys(models, FAILED), seconds)
