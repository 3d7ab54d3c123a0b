"""Serving cost from a fitted model's structure: what train budgets and validate gates use.

A wall-clock measurement on a shared machine varies 2x between runs, so a budget built on one
makes model choice depend on the machine's load. These figures depend only on the fitted model,
and so only on data, params and seed."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

FORESTS = (RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor, ExtraTreesClassifier)
TREES = (DecisionTreeRegressor, DecisionTreeClassifier)  # extra trees subclass these
HIST_BOOSTING = (HistGradientBoostingRegressor, HistGradientBoostingClassifier)
# A calibrator maps one decision value per class (a sigmoid or an isotonic lookup).
CALIBRATOR_OPS = 4


def ops_per_row(model: Any) -> int:
    """Upper bound on the comparisons and multiply-adds one row's prediction performs."""
    if isinstance(model, Pipeline):
        return sum(ops_per_row(step) for _, step in model.steps if step != "passthrough")
    if isinstance(model, CalibratedClassifierCV):
        return sum(
            ops_per_row(pair.estimator) + CALIBRATOR_OPS * len(pair.calibrators)
            for pair in model.calibrated_classifiers_
        )
    if isinstance(model, SVC):
        # One kernel evaluation per support vector, then the dual coefficients.
        return int(model.support_vectors_.size + model.dual_coef_.size)
    if isinstance(model, FORESTS):
        return sum(ops_per_row(tree) for tree in model.estimators_)
    if isinstance(model, TREES):
        return int(model.tree_.max_depth)
    if isinstance(model, HIST_BOOSTING):
        # Its trees are not public: charge each the deepest tree its params allow.
        trees = model.n_iter_ * model.n_trees_per_iteration_
        return int(trees * _hist_tree_depth_bound(model))
    if hasattr(model, "coef_"):
        return int(np.size(model.coef_) + np.size(getattr(model, "intercept_", 0)))
    if hasattr(model, "transform") and hasattr(model, "n_features_in_"):
        # A feature step: one operation per value it produces.
        return int(model.transform(np.zeros((1, model.n_features_in_))).shape[1])
    raise TypeError(f"no serving-cost model for {type(model).__name__}")


def _hist_tree_depth_bound(model: Any) -> int:
    """A tree with L leaves is at most L - 1 deep; max_depth caps it further."""
    bounds = [model.max_depth, None if model.max_leaf_nodes is None else model.max_leaf_nodes - 1]
    known = [b for b in bounds if b is not None]
    if not known:
        raise ValueError(
            "hist_gradient_boosting with neither max_depth nor max_leaf_nodes has no cost bound"
        )
    return min(known)


def artifact_mb(model: Any) -> float:
    """Serialized size of a fitted model in MB."""
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1_000_000
