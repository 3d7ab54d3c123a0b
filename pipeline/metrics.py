"""Holdout metrics per task; shared by evaluate and by the promotion gate in register. Also the
probability calibration figures (Brier score, reliability bins) train and evaluate report."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
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


# Reliability bins of the top-class confidence: ten equal-width bins over [0, 1].
RELIABILITY_BINS = 10


def brier(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """Multiclass Brier score: mean over rows of the summed squared error against one-hot truth."""
    return float(brier_score_loss(y, proba, labels=list(classes)))


def reliability(
    y: np.ndarray, proba: np.ndarray, classes: list[str], bins: int = RELIABILITY_BINS
) -> dict[str, object]:
    """Top-class confidence against accuracy per equal-width bin, and the expected calibration
    error (the row-weighted mean gap); bins without rows are left out."""
    proba = np.asarray(proba, dtype=float)
    confidence = proba.max(axis=1)
    hits = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y)
    # A confidence of exactly 1.0 belongs to the last bin, not an eleventh one.
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        conf, acc = float(confidence[mask].mean()), float(hits[mask].mean())
        ece += mask.sum() / len(confidence) * abs(conf - acc)
        rows.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "rows": int(mask.sum()),
                "confidence": round(conf, 6),
                "accuracy": round(acc, 6),
            }
        )
    return {"bins": rows, "expected_calibration_error": round(float(ece), 6)}
