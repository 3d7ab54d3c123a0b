"""SQLAlchemy plumbing of the application database: engines, metadata, schema, batched pruning."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import JSON, MetaData, Table, create_engine, event, select
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


def create_tables(engine: Engine, attempts: int = 5) -> None:
    """Create every table and index of metadata that is missing; safe with concurrent callers.

    Several processes (gunicorn workers, the Celery workers) may start on a fresh database
    together. On a SQLite file they take turns on an flock next to the file; elsewhere a loser
    of the CREATE race retries after a pause and finds the winner's tables.
    """
    with _schema_turn(engine):
        for attempt in range(1, attempts + 1):
            try:
                metadata.create_all(engine, checkfirst=True)
                # create_all skips indexes of tables that already exist: add the ones a newer
                # release defines (e.g. the prediction log's index used by feedback).
                for table in metadata.sorted_tables:
                    for index in table.indexes:
                        index.create(engine, checkfirst=True)
                return
            except SQLAlchemyError:
                if attempt == attempts:
                    raise
                log.info("create_tables raced with another process; checking again")
                time.sleep(0.05 * attempt)


_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()
_ensure_lock = threading.Lock()


def ensure_schema(engine: Engine) -> None:
    """create_tables() once per engine in this process (cheap on every later call)."""
    if engine in _ensured:
        return
    with _ensure_lock:
        if engine not in _ensured:
            create_tables(engine)
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
