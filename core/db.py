"""SQLAlchemy plumbing of the application database: engines, metadata, migrations, pruning."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import JSON, MetaData, Table, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core import settings

log = logging.getLogger(__name__)

# One MetaData for every table of the application database, with stable constraint names.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# JSON columns: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")

SQLITE_BUSY_TIMEOUT_MS = 10_000
# The PostgreSQL advisory lock that serialises schema changes (a constant of this project;
# advisory locks are per database).
SCHEMA_LOCK_ID = 7_305_042_271_963_917_101


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC (SQLite hands back naive datetimes; we write UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    # WAL lets readers run beside the single writer; several gunicorn workers and the Celery
    # worker share one file, so writers wait (busy_timeout) instead of failing with "locked".
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes in WAL mode
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA temp_store = MEMORY")  # sorts of big INSERT ... SELECT stay in RAM
    cur.close()


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """An engine for url (default DATABASE_URL); SQLite files get WAL and a busy timeout."""
    url = url or settings.database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)  # survive database restarts between requests
    return create_engine(url, **kwargs)


class SchemaError(SQLAlchemyError):
    """The database's schema cannot be brought to this release's: the database is unusable."""


def migrate(target: Engine | str | None = None) -> str:
    """Bring the app database (default DATABASE_URL) to the newest schema; returns its revision.

    The one way a process gets its tables: core/migrations holds the revisions (a database
    created before they existed is checked and adopted by the first). Processes that start
    together on a fresh database take turns (schema_connection); the later ones find nothing
    to do. Raises SchemaError, or the database's own error, when it cannot.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with _alembic_quiet():
            from core import migrations

            with schema_connection(engine) as conn:
                return migrations.upgrade(conn)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # a revision that fails, a database this release cannot adopt
        raise SchemaError(f"the app database cannot be migrated: {exc}") from exc
    finally:
        if engine is not target:
            engine.dispose()


@contextlib.contextmanager
def _alembic_quiet() -> Iterator[None]:
    # Alembic announces its set-up at INFO (plugins on import, the dialect on every look at a
    # database): noise at the start of every process. core.migrations logs what changes.
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def schema_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that one process at a time holds, to change the schema.

    On a SQLite file the processes take turns on an flock next to the file, on PostgreSQL on a
    transaction-level advisory lock. SQLite's foreign keys are off meanwhile (checked before
    the commit): a revision that copies a table, SQLite's way to alter most things, would
    otherwise cascade the drop of the old copy into the rows that reference it.
    """
    with _schema_turn(engine), engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")  # outside a transaction only
            conn.commit()
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))
                yield conn
                if sqlite:
                    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if dangling:
                        raise RuntimeError(f"rows referencing missing rows: {dangling[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                conn.commit()


_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()
_ensure_lock = threading.Lock()


def ensure_schema(engine: Engine) -> None:
    """migrate() once per engine in this process (free on every later call)."""
    if engine in _ensured:
        return
    with _ensure_lock:
        if engine not in _ensured:
            migrate(engine)
            _ensured.add(engine)


@contextlib.contextmanager
def _schema_turn(engine: Engine) -> Iterator[None]:
    url = engine.url
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    if database.startswith("file:"):
        yield
        return
    with open(f"{database}.schema.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and health output."""
    return make_url(url).render_as_string(hide_password=True)


class Pruned(NamedTuple):
    """What one prune removed: rows, and the delete transactions that removed them."""

    deleted: int
    batches: int


def prune(engine: Engine, table: Table, cutoff: datetime, batch_rows: int) -> Pruned:
    """Delete rows created before cutoff, oldest first, batch_rows per short transaction.

    table has an integer `id` that grows with its `created_at` (the prediction log, the monitor
    reports).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    cols = table.c
    old = cols.created_at < cutoff
    deleted = batches = 0
    while True:
        # Pick the batch in a read-only statement first: on SQLite a DELETE holds the one write
        # lock for as long as it runs, so the scan must not happen under it (API workers flush
        # the log concurrently). The ids are consecutive among old rows, so the delete is a
        # primary-key range, repeating the age condition for newer rows inside the range.
        batch = select(cols.id).where(old).order_by(cols.id).limit(batch_rows)
        with engine.connect() as conn:
            ids = conn.execute(batch).scalars().all()
        if not ids:
            break
        with engine.begin() as conn:
            done = conn.execute(table.delete().where(cols.id.between(ids[0], ids[-1]), old))
        deleted += done.rowcount
        batches += 1
        if len(ids) < batch_rows:
            break  # that was the last old row; a further look would scan the table for nothing
    return Pruned(deleted, batches)
