"""Ground-truth feedback: labels for logged predictions, live quality, and training rows.

A label is keyed by the prediction's request id and row index. Storing it copies the logged
inputs and output next to the label, so feedback stays usable (for live quality and as training
data) after the retention job prunes the prediction log. One label per predicted row: sending
the same label again is idempotent, a different label for a labelled row is a conflict.
Every call is all-or-nothing: an unknown key, a wrong type or a conflict stores nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.engine import Engine

from core import db
from core.prediction_log.table import prediction_log
from core.specs import ModelSpec

DEFAULT_WINDOW = 500
MAX_WINDOW = 100_000
MAX_HOUSING_VALUE = 100.0  # 100k USD units: 10 M USD; a label above is surely a unit mistake

prediction_feedback = Table(
    "prediction_feedback",
    db.metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("inputs", db.JSON_TYPE, nullable=False),
    Column("prediction", db.JSON_TYPE, nullable=False),
    Column("actual", db.JSON_TYPE, nullable=False),
    Column("predicted_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("request_id", "row_index"),
    Index(None, "model", "version", "id"),
)


@dataclass(frozen=True)
class Label:
    """One label: the predicted row it belongs to and the true value (number or class)."""

    request_id: str
    row_index: int
    actual: Any


@dataclass
class Outcome:
    """What record() did. Errors are keyed by the label's position in the request."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[int, str] = field(default_factory=dict)  # no such logged prediction
    invalid: dict[int, str] = field(default_factory=dict)  # wrong type for the model
    conflicts: dict[int, str] = field(default_factory=dict)  # labelled before, differently

    @property
    def stored(self) -> bool:
        """True when the call changed the database."""
        return bool(self.accepted) and not (self.missing or self.invalid or self.conflicts)


def check_actual(spec: ModelSpec, actual: Any) -> tuple[Any, str | None]:
    """The label in stored form, or an error message when it does not fit the model."""
    if spec.task == "classification":
        if isinstance(actual, str) and actual in spec.classes:
            return actual, None
        return None, f"must be one of {list(spec.classes)} for {spec.name}"
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return None, f"must be a number ({spec.unit}) for {spec.name}"
    value = float(actual)
    if not math.isfinite(value) or not 0.0 <= value <= MAX_HOUSING_VALUE:
        return None, f"must be between 0 and {MAX_HOUSING_VALUE:g} ({spec.unit}) for {spec.name}"
    return value, None


def _predictions(engine: Engine, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """Logged rows by (request_id, row_index); the newest wins if a client reused an id."""
    found: dict[tuple[str, int], Any] = {}
    unique = sorted(set(keys))
    cols = prediction_log.c
    with engine.connect() as conn:
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = conn.execute(
                select(prediction_log)
                .where(tuple_(cols.request_id, cols.row_index).in_(chunk))
                .order_by(cols.id)
            ).mappings()
            for row in rows:
                found[(row["request_id"], row["row_index"])] = row
    return found


def _existing(engine: Engine, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    cols = prediction_feedback.c
    out: dict[tuple[str, int], Any] = {}
    with engine.connect() as conn:
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = conn.execute(
                select(cols.request_id, cols.row_index, cols.actual).where(
                    tuple_(cols.request_id, cols.row_index).in_(chunk)
                )
            )
            for rid, idx, actual in rows:
                out[(rid, idx)] = actual
    return out


def _summary(row: Any, actual: Any) -> dict[str, Any]:
    return {
        "request_id": row["request_id"],
        "row_index": row["row_index"],
        "model": row["model"],
        "version": row["version"],
        "prediction": row["output"],
        "actual": actual,
    }


def record(engine: Engine, labels: Sequence[Label], specs: dict[str, ModelSpec]) -> Outcome:
    """Store the labels (all or nothing) and say what happened to each."""
    out = Outcome()
    keys = [(label.request_id, label.row_index) for label in labels]
    logged = _predictions(engine, keys)
    existing = _existing(engine, keys)
    rows, seen = [], {}
    now = db.utcnow()
    for i, label in enumerate(labels):
        key = keys[i]
        row = logged.get(key)
        if row is None:
            out.missing[i] = "no logged prediction has this request_id and row_index"
            continue
        actual, error = check_actual(specs[row["model"]], label.actual)
        if error is not None:
            out.invalid[i] = error
            continue
        before = existing.get(key, seen.get(key))
        if before is not None:
            if before == actual:
                out.duplicates.append(_summary(row, actual))
            else:
                out.conflicts[i] = f"this prediction was already labelled {before!r}"
            continue
        seen[key] = actual
        rows.append(
            {
                "request_id": row["request_id"],
                "row_index": row["row_index"],
                "model": row["model"],
                "version": row["version"],
                "inputs": row["inputs"],
                "prediction": row["output"],
                "actual": actual,
                "predicted_at": row["created_at"],
                "created_at": now,
            }
        )
        out.accepted.append(_summary(row, actual))
    if out.missing or out.invalid or out.conflicts:
        out.accepted = []
        return out
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(prediction_feedback), rows)
    return out


def versions(engine: Engine, model: str, limit: int = 20) -> list[str]:
    """Versions of model with labels, most recently labelled first."""
    cols = prediction_feedback.c
    query = (
        select(cols.version, func.max(cols.id).label("last"))
        .where(cols.model == model)
        .group_by(cols.version)
        .order_by(func.max(cols.id).desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [row.version for row in conn.execute(query)]


def _window(engine: Engine, model: str, version: str, window: int) -> list[Any]:
    cols = prediction_feedback.c
    query = (
        select(cols.prediction, cols.actual, cols.created_at)
        .where(cols.model == model, cols.version == version)
        .order_by(cols.id.desc())
        .limit(window)
    )
    with engine.connect() as conn:
        return list(conn.execute(query))


def score(spec: ModelSpec, predictions: Sequence[Any], actuals: Sequence[Any]) -> dict[str, float]:
    """Live metrics of labelled rows: rmse and mae (regression) or accuracy (classification)."""
    if spec.task == "classification":
        labels = [p["label"] if isinstance(p, dict) else p for p in predictions]
        hits = np.asarray([p == a for p, a in zip(labels, actuals, strict=True)], dtype=float)
        return {"accuracy": float(hits.mean())}
    err = np.asarray(predictions, dtype=float) - np.asarray(actuals, dtype=float)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def labelled_values(
    engine: Engine, model: str, version: str, window: int = DEFAULT_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and actual values of a regression version's newest `window` labels (the rows
    quality() scores), newest first."""
    rows = _window(engine, model, version, window)
    predictions = np.asarray([r.prediction for r in rows], dtype=float)
    return predictions, np.asarray([r.actual for r in rows], dtype=float)


def no_metrics(spec: ModelSpec) -> dict[str, float | None]:
    """The live metrics of a version with no labels: each one None."""
    return {"accuracy": None} if spec.task == "classification" else {"rmse": None, "mae": None}


def quality(
    engine: Engine, spec: ModelSpec, version: str, window: int = DEFAULT_WINDOW
) -> dict[str, Any]:
    """Live quality of one version over its newest `window` labels (metrics None when none)."""
    rows = _window(engine, spec.name, version, window)
    metrics: dict[str, float | None]
    if rows:
        metrics = score(spec, [r.prediction for r in rows], [r.actual for r in rows])
    else:
        metrics = no_metrics(spec)
    stamps: list[datetime] = [db.as_utc(r.created_at) for r in rows]
    return {
        "version": version,
        "labelled": len(rows),
        "window": window,
        "metrics": metrics,
        "first_labelled_at": min(stamps) if stamps else None,
        "last_labelled_at": max(stamps) if stamps else None,
    }


def training_rows(engine: Engine, spec: ModelSpec) -> Iterable[dict[str, Any]]:
    """Every label of a model as {feature: value, ..., "target": actual}, oldest first."""
    cols = prediction_feedback.c
    query = select(cols.inputs, cols.actual).where(cols.model == spec.name).order_by(cols.id)
    with engine.connect() as conn:
        for inputs, actual in conn.execute(query):
            yield {**{name: inputs[name] for name in spec.feature_names}, "target": actual}
