"""Monitoring reports (drift, live quality, retention runs), stored durably in the SQL database.

The periodic monitor jobs write one row per run and model; the API serves the newest one
(`GET /models/<name>/drift`), so every API worker and replica answers the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, insert, select
from sqlalchemy.engine import Engine

from core import db

DRIFT = "drift"
QUALITY = "quality"
RETENTION = "retention"
COMPARISON = "comparison"  # champion against challenger, and what the monitor did about it
KINDS = (DRIFT, QUALITY, RETENTION, COMPARISON)
ANY_MODEL = "*"  # reports that are not about one model (retention)

# The status of a drift or quality report: the monitor writes them, the API serves them.
STATUS_OK = "ok"
STATUS_DRIFT = "drift"  # overall PSI above the threshold
STATUS_DEGRADED = "degraded"  # live quality beyond the threshold
STATUS_INSUFFICIENT_DATA = "insufficient_data"  # too few rows or labels for a verdict
STATUS_NO_REFERENCE = "no_reference"  # the champion has no training-data reference
DRIFT_STATUSES = (STATUS_OK, STATUS_DRIFT, STATUS_INSUFFICIENT_DATA, STATUS_NO_REFERENCE)

monitor_reports = Table(
    "monitor_reports",
    db.metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("model", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", db.JSON_TYPE, nullable=False),
    Index(None, "kind", "model", "id"),
)


def save(engine: Engine, kind: str, model: str, payload: dict[str, Any]) -> datetime:
    """Store one report; returns its timestamp."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    created = db.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(monitor_reports).values(
                kind=kind, model=model, created_at=created, payload=payload
            )
        )
    return created


def latest(engine: Engine, kind: str, model: str) -> dict[str, Any] | None:
    """The newest report of kind for model as {"created_at": ..., **payload}, or None."""
    query = (
        select(monitor_reports.c.created_at, monitor_reports.c.payload)
        .where(monitor_reports.c.kind == kind, monitor_reports.c.model == model)
        .order_by(monitor_reports.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return {**row.payload, "created_at": db.as_utc(row.created_at)}
