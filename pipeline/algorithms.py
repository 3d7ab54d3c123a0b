"""Candidate estimators the train stage may compare, by task and name."""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import SVC

ALGORITHMS: dict[str, dict[str, type]] = {
    "regression": {
        "ridge": Ridge,
        "hist_gradient_boosting": HistGradientBoostingRegressor,
        "random_forest": RandomForestRegressor,
    },
    "classification": {
        "logistic_regression": LogisticRegression,
        "svc": SVC,
        "random_forest": RandomForestClassifier,
    },
}


def build(task: str, name: str, hyper: dict[str, Any], seed: int) -> Any:
    """An unfitted estimator for one candidate."""
    cls = ALGORITHMS[task][name]
    kwargs = dict(hyper or {})
    defaults = cls().get_params()
    if "random_state" in defaults:
        kwargs.setdefault("random_state", seed)
    if "n_jobs" in defaults:
        kwargs.setdefault("n_jobs", 1)  # served one row at a time: threads only add latency
    estimator = cls(**kwargs)
    if cls is SVC:
        # The API returns class probabilities; SVC(probability=True) is deprecated for this.
        return CalibratedClassifierCV(estimator, ensemble=False)
    return estimator
