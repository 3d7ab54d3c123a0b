"""Per-process runtime state of a worker: its settings, who it is, when it booted, its engine."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy.engine import Engine

from core import jobs
from core.db import make_engine
from workers.config import WorkerSettings, load


@dataclass(frozen=True)
class WorkerIdentity:
    """A worker node as recorded on the jobs it runs."""

    nodename: str
    pid: int
    booted_at: datetime


# Set once by the worker's main process at start (worker_init); pool children inherit it.
_booted_at: datetime | None = None
_engine: Engine | None = None
_engine_pid: int | None = None
_lock = threading.Lock()


@cache
def settings() -> WorkerSettings:
    """This worker's settings, read from the environment once per process."""
    return load()


def mark_booted() -> datetime:
    """Remember when this worker node started (jobs it ran before that are orphans)."""
    global _booted_at
    _booted_at = jobs.utcnow()
    return _booted_at


def identity(nodename: str) -> WorkerIdentity:
    """This process as a job holder on node nodename."""
    return WorkerIdentity(nodename, os.getpid(), _booted_at or mark_booted())


def job_engine() -> Engine:
    """The job database engine of this process (rebuilt after a fork, never shared)."""
    global _engine, _engine_pid
    pid = os.getpid()
    with _lock:
        if _engine is None or _engine_pid != pid:
            if _engine is not None:
                # Inherited from the parent: drop its pooled connections without closing them.
                _engine.dispose(close=False)
            _engine = make_engine(settings().database_url)
            _engine_pid = pid
            jobs.ensure_schema(_engine)
        return _engine
