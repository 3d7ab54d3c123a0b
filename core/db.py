"""SQLAlchemy plumbing shared by the prediction log and the job records: engines and metadata."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url
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


def create_tables(engine: Engine, attempts: int = 3) -> None:
    """Create every table of metadata that is missing; tolerates a concurrent creator."""
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine, checkfirst=True)
            # create_all skips indexes of tables that already exist: add ones a newer
            # release defines (e.g. the prediction log's request_id index used by feedback).
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(engine, checkfirst=True)
            return
        except SQLAlchemyError:
            # Two processes starting together may both see "missing" and race on CREATE; the
            # loser fails, and the next check finds the winner's table.
            if attempt == attempts:
                raise
            log.info("create_tables raced with another process; checking again")


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and health output."""
    return make_url(url).render_as_string(hide_password=True)
