"""prediction_shadow: both versions' outputs of shadow-scored rows (champion vs challenger).

The table is frozen here as this revision creates it (a revision never imports the live table
definitions, which move on). It only adds a table: the rows of every other table stay as they
are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create prediction_shadow and its two indexes."""
    op.create_table(
        "prediction_shadow",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("served", sa.String(16), nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=False),
        sa.Column("champion_output", JSON, nullable=False),
        sa.Column("challenger_version", sa.String(32), nullable=False),
        sa.Column("challenger_output", JSON, nullable=False),
        sa.Column("shadow_ms", sa.Float, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_shadow"),
    )
    op.create_index("ix_prediction_shadow_model_id", "prediction_shadow", ["model", "id"])
    op.create_index(
        "ix_prediction_shadow_request_id_row_index",
        "prediction_shadow",
        ["request_id", "row_index"],
    )


def downgrade() -> None:
    """Drop prediction_shadow (its indexes go with it)."""
    op.drop_table("prediction_shadow")
