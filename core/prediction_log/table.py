"""The prediction_log table: one row per predicted row, inputs and output as JSON by field name."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, String, Table

from core import db

prediction_log = Table(
    "prediction_log",
    db.metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("inputs", db.JSON_TYPE, nullable=False),
    Column("output", db.JSON_TYPE, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Serves GET /predictions and the drift window (newest first, per model).
    Index(None, "model", "id"),
    # Serves POST /feedback, which looks rows up by (request id, row); costs ~10-15% of the
    # write rate (bench/bench_monitor.py).
    Index(None, "request_id", "row_index"),
)
