"""Holdout metrics per task; shared by evaluate and by the promotion gate in register."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)

from core.specs import get_spec


def holdout_metrics(model: str, estimator: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Metrics of a fitted estimator on the holdout rows."""
    pred = estimator.predict(x)
    if get_spec(model).task == "regression":
        return {
            "rmse": float(root_mean_squared_error(y, pred)),
            "mae": float(mean_absolute_error(y, pred)),
            "r2": float(r2_score(y, pred)),
        }
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
    }
