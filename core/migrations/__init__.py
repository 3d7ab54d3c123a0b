"""Schema migrations of the application database: Alembic revisions and the way to apply them.

The revisions in `versions/` are the one source of the database schema; the tables declared in
core (`db.metadata`) are what the code expects, and tests/test_migrations.py checks that the
newest revision gives exactly that on SQLite and PostgreSQL. `core.db.migrate` applies them,
the `alembic` CLI (configured in pyproject.toml) writes new ones: README, "Schema migrations".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Not Alembic's default name: MLflow keeps its own revision in `alembic_version`, and the two
# must not meet if one database ever holds both.
VERSION_TABLE = "alembic_version_app"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this environment; with connection, env.py migrates on it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def target_metadata() -> MetaData:
    """The tables the code declares (every table module of core imported), for autogenerate."""
    # Importing a table module adds its tables to db.metadata.
    from core import db, feedback, jobs, monitor_reports  # noqa: F401
    from core.prediction_log import shadow, table  # noqa: F401

    return db.metadata


def render_item(kind: str, obj: object, autogen: AutogenContext) -> str | Literal[False]:
    """How autogenerate writes the project's JSON type (JSONB on PostgreSQL) in a revision.

    Alembic's own rendering of that variant names `Text` without importing it.
    """
    on_postgresql = obj.dialect_impl(postgresql.dialect()) if isinstance(obj, JSON) else None
    if kind != "type" or not isinstance(on_postgresql, postgresql.JSONB):
        return False
    autogen.imports.add("from sqlalchemy.dialects import postgresql")
    return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'


def head() -> str:
    """The newest revision."""
    found = ScriptDirectory.from_config(config()).get_current_head()
    if found is None:
        raise RuntimeError(f"no revision in {MIGRATIONS_DIR / 'versions'}")
    return found


def known(revision: str) -> bool:
    """True when revision is one of this release's."""
    script = ScriptDirectory.from_config(config())
    return any(found.revision == revision for found in script.walk_revisions())


def current(connection: Connection) -> str | None:
    """The revision a database is at (None: never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: Connection) -> str:
    """Apply every revision the database lacks, on connection; returns the revision it is at."""
    before, newest = current(connection), head()
    if before is not None and not known(before):
        raise RuntimeError(
            f"the app database is at schema revision {before}, which this release does not "
            f"know (its newest is {newest}): a newer release migrated it"
        )
    if before != newest:
        log.info("app database schema: revision %s -> %s", before or "(none)", newest)
        command.upgrade(config(connection), "head")
    return newest
