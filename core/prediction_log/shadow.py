"""The prediction_shadow table: both versions' outputs for a predicted row, one row each.

While @champion answers the client, each API worker also scores a share of requests with the
version that did not answer (normally @challenger; with a canary, @champion for the requests
the challenger answered), off the request path, and records one row per predicted row here.
`served` says which of the two answered the client. Outputs have the prediction log's shape:
a number (regression) or {"label": ..., "probabilities": {...}} (classification).
core.comparison reads these rows, joined with the labels of core.feedback by
(request_id, row_index); the retention job prunes them with the prediction log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    and_,
    insert,
    select,
)
from sqlalchemy.engine import Engine

from core import db
from core.feedback import prediction_feedback

SERVED_CHAMPION = "champion"
SERVED_CHALLENGER = "challenger"
SERVED = (SERVED_CHAMPION, SERVED_CHALLENGER)

prediction_shadow = Table(
    "prediction_shadow",
    db.metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    # Which alias answered the client: "champion" or "challenger" (a canary's share).
    Column("served", String(16), nullable=False),
    Column("champion_version", String(32), nullable=False),
    Column("champion_output", db.JSON_TYPE, nullable=False),
    Column("challenger_version", String(32), nullable=False),
    Column("challenger_output", db.JSON_TYPE, nullable=False),
    Column("shadow_ms", Float, nullable=False),  # model time of the shadow scoring
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Serves the comparison window (newest first, per model) and retention's id ranges.
    Index(None, "model", "id"),
    # Joins the labels of POST /feedback, keyed by (request id, row).
    Index(None, "request_id", "row_index"),
)

COLUMNS = tuple(c.name for c in prediction_shadow.columns if c.name != "id")


def record(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (dicts keyed by column name) in one executemany; created_at defaults to now.

    Every column but id and created_at is required. Nothing is written for an empty sequence.
    """
    if not rows:
        return
    now = db.utcnow()
    values = []
    for row in rows:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"prediction_shadow has no column(s) {sorted(unknown)}")
        if row.get("served") not in SERVED:
            raise ValueError(f"served must be one of {SERVED}, got {row.get('served')!r}")
        values.append({**row, "created_at": row.get("created_at") or now})
    with engine.begin() as conn:
        conn.execute(insert(prediction_shadow), values)


def window(
    engine: Engine, model: str, champion_version: str, challenger_version: str, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` rows both versions scored, newest first, each with its label.

    Each row: request_id, row_index, served, champion_output, challenger_output, created_at,
    and actual (the ground-truth label of core.feedback, None when unlabelled).
    """
    cols = prediction_shadow.c
    recent = (
        select(
            cols.id,
            cols.request_id,
            cols.row_index,
            cols.served,
            cols.champion_output,
            cols.challenger_output,
            cols.created_at,
        )
        .where(
            cols.model == model,
            cols.champion_version == champion_version,
            cols.challenger_version == challenger_version,
        )
        .order_by(cols.id.desc())
        .limit(limit)
        .subquery()
    )
    fb = prediction_feedback.c
    query = (
        select(recent, fb.actual)
        .select_from(
            recent.outerjoin(
                prediction_feedback,
                and_(
                    fb.request_id == recent.c.request_id,
                    fb.row_index == recent.c.row_index,
                    fb.model == model,
                ),
            )
        )
        .order_by(recent.c.id.desc())
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def prune(engine: Engine, cutoff: datetime, batch_rows: int) -> db.Pruned:
    """Delete shadow rows created before cutoff in short batches (core.db.prune)."""
    return db.prune(engine, prediction_shadow, cutoff, batch_rows)
