"""Baseline: job records, retrain locks, prediction log, feedback, monitor reports.

The schema the releases before migrations created with `metadata.create_all`, frozen here (a
revision never imports the live table definitions, which move on). On a database those
releases created, it checks the tables against this schema and adds only what an older
release had not created yet (a table, an index), as they did at start; any other difference
stops the migration, changing nothing.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

sa.Table(
    "retrain_jobs",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("model", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(64)),
    sa.Column("force", sa.Boolean, nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("submitted_at", TIMESTAMP, nullable=False),
    sa.Column("started_at", TIMESTAMP),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Column("heartbeat_at", TIMESTAMP),
    sa.Column("error", sa.Text),
    sa.Column("result", JSON),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(255)),
    sa.Column("worker_pid", sa.Integer),
    sa.Index(None, "submitted_at"),
    sa.Index(None, "state"),
)
sa.Table(
    "retrain_locks",
    metadata,
    sa.Column("model", sa.String(32), primary_key=True),
    sa.Column(
        "job_id",
        sa.String(36),
        sa.ForeignKey("retrain_jobs.job_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("locked_at", TIMESTAMP, nullable=False),
)
sa.Table(
    "prediction_log",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("inputs", JSON, nullable=False),
    sa.Column("output", JSON, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Index(None, "model", "id"),
    sa.Index(None, "request_id", "row_index"),
)
sa.Table(
    "prediction_feedback",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("inputs", JSON, nullable=False),
    sa.Column("prediction", JSON, nullable=False),
    sa.Column("actual", JSON, nullable=False),
    sa.Column("predicted_at", TIMESTAMP, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.UniqueConstraint("request_id", "row_index"),
    sa.Index(None, "model", "version", "id"),
)
sa.Table(
    "monitor_reports",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Index(None, "kind", "model", "id"),
)

# What the releases before migrations added to an existing database at start, all they did.
ADDED_AT_START = ("add_table", "add_index")


def upgrade() -> None:
    """Create the baseline tables, or adopt the ones a release before migrations created."""
    bind = op.get_bind()
    if set(sa.inspect(bind).get_table_names()) & set(metadata.tables):
        adopt(bind)
    else:
        metadata.create_all(bind)


def downgrade() -> None:
    """Drop the baseline tables."""
    metadata.drop_all(op.get_bind())


def adopt(bind: sa.Connection) -> None:
    """Check a database created without migrations against the baseline, then complete it."""
    context = MigrationContext.configure(
        bind, opts={"compare_type": True, "include_name": _baseline_table}
    )
    differences = [
        diff
        for diff in compare_metadata(context, metadata)
        if not (isinstance(diff, tuple) and diff[0] in ADDED_AT_START)
    ]
    if differences:
        raise RuntimeError(
            "the application database was not created by this service's schema and cannot be "
            f"adopted; its tables differ from revision {revision}: {differences}"
        )
    for table in metadata.sorted_tables:
        table.create(bind, checkfirst=True)
        for index in table.indexes:
            index.create(bind, checkfirst=True)


def _baseline_table(name: str | None, kind: str, _parents: dict) -> bool:
    # Only the baseline's tables are compared: anything else in the database is not ours.
    return kind != "table" or name in metadata.tables
