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


# The same metrics under cross-validation: sklearn scorer per name ("neg_" ones are negated
# back, so every figure reads like its holdout counterpart).
CV_SCORERS = {
    "regression": {
        "rmse": "neg_root_mean_squared_error",
        "mae": "neg_mean_absolute_error",
        "r2": "r2",
    },
    "classification": {"accuracy": "accuracy", "macro_f1": "f1_macro"},
}


def cv_metrics(task: str, scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean per metric from sklearn's cross_validate output."""
    out = {}
    for name, scorer in CV_SCORERS[task].items():
        mean = float(np.mean(scores[f"test_{name}"]))
        out[name] = -mean if scorer.startswith("neg_") else mean
    return out
