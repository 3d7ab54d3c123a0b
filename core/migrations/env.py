"""Alembic's environment for the application database (run by Alembic, never imported).

core.db.migrate hands over its connection, in a transaction under the schema lock; the
`alembic` CLI, which writes revisions, gets the same kind of connection to DATABASE_URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from core import db, migrations


def run(connection: Connection) -> None:
    """Run the pending revisions on connection."""
    context.configure(
        connection=connection,
        target_metadata=migrations.target_metadata(),
        version_table=migrations.VERSION_TABLE,
        # SQLite changes most things about a table only by copying it: autogenerate writes
        # such changes as batch operations, which work on PostgreSQL too.
        render_as_batch=True,
        render_item=migrations.render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them on a database")
given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = db.make_engine()
    try:
        with db.schema_connection(engine) as conn:
            run(conn)
    finally:
        engine.dispose()
