"""Running a served model on a validated matrix and recording the model metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn

from app.errors import ApiError
from app.model_cache import ServedModel
from core.histogram_batch import observe_many

_thread_state = threading.local()


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer for every row, column-wise.

    values: regression outputs (n,); for a classifier, probabilities (n, classes) in the
    served model's class order (None without predict_proba) and label indexes into
    served.classes (n,). log_outputs: the same outputs laid out for the prediction log
    (core.prediction_log.statements), in the spec's class order.
    """

    values: np.ndarray | None
    probabilities: np.ndarray | None
    labels: np.ndarray | None
    log_outputs: np.ndarray | tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.values if self.values is not None else self.labels)


def _configure_sklearn_for_thread() -> None:
    # Inputs reach the model validated as finite float64, so scikit-learn's own finiteness
    # scan is redundant work on every call. Its config is per thread: set it once per thread.
    sklearn.set_config(assume_finite=True)
    _thread_state.configured = True


def _require_finite(values: np.ndarray) -> None:
    """422 naming the rows whose inputs, though within bounds, overflowed the model."""
    if np.isfinite(values).all():
        return
    rows = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
    message = ["The model cannot compute a finite prediction for these values."]
    raise ApiError(
        422,
        "Input values are outside the range the model can compute.",
        {"instances": {str(i): {"_schema": message} for i in rows[:100].tolist()}},
    )


def compute(served: ServedModel, matrix: np.ndarray) -> tuple[Prediction, float]:
    """Run the served model (scikit-learn or its compiled form) on matrix, recording nothing:
    the prediction and the model's time in seconds. ApiError 422 when outputs are not finite."""
    if not getattr(_thread_state, "configured", False):
        _configure_sklearn_for_thread()
    model = served.model
    n = matrix.shape[0]
    if served.spec.task == "regression":
        started = time.perf_counter()
        values = np.asarray(model.predict(matrix), dtype=np.float64).reshape(n)
        seconds = time.perf_counter() - started
        _require_finite(values)
        return Prediction(values, None, None, values), seconds

    started = time.perf_counter()
    if served.has_proba:
        proba = np.asarray(model.predict_proba(matrix), dtype=np.float64)
        seconds = time.perf_counter() - started
        _require_finite(proba)
        # The label is the most probable class, so a label never disagrees with its own
        # probabilities (SVC's predict() may, and calling both would double the model time).
        index = proba.argmax(axis=1)
    else:
        labels = model.predict(matrix)
        seconds = time.perf_counter() - started
        lookup = {c: i for i, c in enumerate(served.classes)}
        index = np.fromiter((lookup[str(label)] for label in labels), dtype=np.intp, count=n)
        proba = None
    log_proba = proba if proba is not None else np.full((n, len(served.classes)), np.nan)
    log_index = index
    if served.to_spec_columns is not None:
        log_proba, log_index = log_proba[:, served.to_spec_columns], served.to_spec_labels[index]
    # Column blocks, joined by the prediction log's writer thread rather than here.
    return Prediction(None, proba, index, (log_proba, log_index.reshape(n, 1))), seconds


def predict(served: ServedModel, matrix: np.ndarray) -> Prediction:
    """Run the served model on matrix and record its metrics (rows, model time, outputs)."""
    prediction, seconds = compute(served, matrix)
    served.inference_histogram.observe(seconds)
    n = len(prediction)
    served.predictions_counter.inc(n)
    if prediction.values is not None:
        if n == 1:
            served.value_histogram.observe(float(prediction.values[0]))
        else:
            observe_many(served.value_histogram, prediction.values)
    elif n == 1:
        served.class_counters[int(prediction.labels[0])].inc()
    else:
        counts = np.bincount(prediction.labels, minlength=len(served.classes)).tolist()
        for i, count in enumerate(counts):
            if count:
                served.class_counters[i].inc(count)
    return prediction


def json_outputs(served: ServedModel, prediction: Prediction) -> list[Any]:
    """One JSON-ready output per row: a float, or {"label", "probabilities"}."""
    if prediction.values is not None:
        return prediction.values.tolist()
    classes = served.classes
    if prediction.probabilities is None:
        return [{"label": classes[i], "probabilities": None} for i in prediction.labels.tolist()]
    return [
        {"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
        for i, p in zip(prediction.labels.tolist(), prediction.probabilities.tolist(), strict=True)
    ]
