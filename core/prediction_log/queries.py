"""Reading and pruning the prediction log: recent rows, recent inputs, retention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core import db
from core.prediction_log.table import prediction_log
from core.specs import ModelSpec


def recent(engine: Engine, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest logged rows first, optionally for one model."""
    query = select(prediction_log).order_by(prediction_log.c.id.desc()).limit(limit)
    if model is not None:
        query = query.where(prediction_log.c.model == model)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        entry = dict(row)
        created = entry["created_at"]
        if created.tzinfo is None:  # SQLite keeps no zone; we always store UTC
            created = created.replace(tzinfo=UTC)
        entry["created_at"] = created.isoformat().replace("+00:00", "Z")
        out.append(entry)
    return out


def recent_inputs(engine: Engine, spec: ModelSpec, limit: int) -> np.ndarray:
    """The newest `limit` logged input rows of a model (any version), in feature order."""
    cols = prediction_log.c
    query = select(cols.inputs).where(cols.model == spec.name).order_by(cols.id.desc()).limit(limit)
    names = spec.feature_names
    with engine.connect() as conn:
        rows = [
            [inputs.get(name) for name in names]
            for (inputs,) in conn.execute(query)
            if isinstance(inputs, dict)
        ]
    if not rows:
        return np.empty((0, len(names)))
    # None (a row logged before a feature existed) becomes NaN; such rows are dropped.
    matrix = np.asarray(rows, dtype=float)
    return matrix[~np.isnan(matrix).any(axis=1)]


def prune(engine: Engine, cutoff: datetime, batch_rows: int) -> db.Pruned:
    """Delete log rows created before cutoff in short batches (core.db.prune)."""
    return db.prune(engine, prediction_log, cutoff, batch_rows)
