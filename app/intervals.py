"""Prediction intervals on request: `?interval=0.9` on /predict, the `interval` parameter of
the V2 and MLflow protocols. Checked before anything is predicted, so a bad level changes
nothing."""

from __future__ import annotations

import math
from typing import Any

from app.errors import ApiError
from app.model_cache import ServedModel
from core.conformal import Intervals

PARAMETER = "interval"


def parse_level(raw: Any, field: str = PARAMETER) -> float | None:
    """The requested level (None when not asked for); 422 unless a number in (0, 1)."""
    if raw is None:
        return None
    try:
        if isinstance(raw, bool):
            raise ValueError
        level = float(raw)
    except (TypeError, ValueError):
        level = math.nan
    if not 0.0 < level < 1.0:
        message = "Must be a number between 0 and 1 (exclusive), the interval's coverage."
        raise ApiError(422, "Invalid interval level.", {field: [message]})
    return level


def intervals_for(served: ServedModel, level: float, field: str = PARAMETER) -> Intervals:
    """The version's intervals when they support level; 422 for a classifier, 409 for a version
    registered without intervals or a level its calibration cannot give (it names the range)."""
    spec = served.spec
    if spec.task != "regression":
        message = f"Prediction intervals are for regression models; {spec.name} is a classifier."
        raise ApiError(422, "Invalid interval level.", {field: [message]})
    if served.intervals is None:
        raise ApiError(
            409,
            f"Version {served.version} of {spec.registered_name} has no conformal calibration "
            "(registered before intervals existed); pin a newer version or omit the interval.",
        )
    try:
        served.intervals.check_level(level)
    except ValueError as exc:
        # A level in (0, 1) is a valid request; this version's calibration cannot give it.
        raise ApiError(409, f"Version {served.version} of {spec.registered_name}: {exc}.") from None
    return served.intervals
