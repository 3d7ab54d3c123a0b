"""The prediction log writer: requests record into a memory buffer, a thread writes it out.

Requests call PredictionLogWriter.record() with the numpy arrays they already hold (validated
inputs, model outputs); it only appends a reference to an in-memory buffer, so a 10,000-row
batch costs the request O(1) and the buffer holds compact arrays, not per-row Python objects.
A background thread flushes every few seconds (or sooner when the buffer grows) and a final
flush runs on graceful shutdown. Outputs passed to record() are one array, or a tuple of column
blocks (layout in core.prediction_log.statements), turned into rows column-wise at flush time.

A flush writes in chunks of at most max_rows_per_statement rows, each its own transaction, and
takes each chunk off the buffer just before writing it: a request that found the buffer full
waits for one chunk's write, not for a whole flush.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Engine

from core import db
from core.metrics import PREDICTION_LOG_ROWS
from core.prediction_log.statements import Statements
from core.prediction_log.table import prediction_log
from core.specs import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    request_id: str
    model: str
    version: str
    latency_ms: float
    created: float  # epoch seconds
    inputs: np.ndarray  # (n, n_features)
    outputs: np.ndarray | tuple[np.ndarray, ...]  # see the module docstring

    @property
    def has_probabilities(self) -> bool:
        """False for a classifier without predict_proba (its probability columns are NaN)."""
        first = self.outputs[0] if isinstance(self.outputs, tuple) else self.outputs
        return first.size == 0 or not np.isnan(first.flat[0])

    def matrix(self) -> np.ndarray:
        """Inputs and outputs side by side: one row per predicted row."""
        n = len(self.inputs)
        blocks = self.outputs if isinstance(self.outputs, tuple) else (self.outputs,)
        return np.concatenate([self.inputs, *(b.reshape(n, -1) for b in blocks)], axis=1)


class PredictionLogWriter:
    """Buffers answered predictions in memory and writes them to the database in batches."""

    def __init__(
        self,
        engine: Engine,
        specs: Iterable[ModelSpec],
        *,
        flush_seconds: float = 1.0,
        flush_rows: int = 20_000,
        max_pending_rows: int = 100_000,
        max_rows_per_statement: int = 5_000,
        block_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self._statements = Statements(specs)
        self._lock_path = _sqlite_lock_path(engine)
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_pending_rows = max_pending_rows
        self.max_rows_per_statement = max_rows_per_statement
        self.block_seconds = block_seconds
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()  # guards _pending and _pending_rows
        self._space = threading.Condition(self._lock)  # notified when a flush empties the buffer
        self._flush_lock = threading.Lock()  # one flush at a time (thread, shutdown, tests)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tables_ready = False
        self._atexit_registered = False
        self.last_error: str | None = None
        self.last_flush_at: float | None = None
        self.rows_written = 0
        self.rows_dropped = 0
        self._last_drop_warning = 0.0

    # -- request path -------------------------------------------------------------------------
    def record(
        self,
        request_id: str,
        model: str,
        version: str,
        inputs: np.ndarray,
        outputs: np.ndarray | tuple[np.ndarray, ...],
        latency_ms: float,
    ) -> None:
        """Queue one answered request (all its rows); O(1), never touches the database."""
        n = len(inputs)
        item = _Pending(request_id, model, version, latency_ms, time.time(), inputs, outputs)
        with self._lock:
            if self._pending_rows + n > self.max_pending_rows:
                self._wait_for_space(n)
            dropped = self._pending_rows + n > self.max_pending_rows
            if not dropped:
                self._pending.append(item)
                self._pending_rows += n
            wake = self._pending_rows >= self.flush_rows
        if dropped:
            self._count_drop(n)
        if wake:
            self._wake.set()

    def _wait_for_space(self, n: int) -> None:
        """Backpressure (called holding the lock): wait for the writer rather than lose rows.

        Only while the writer is healthy and running: with a failing database, waiting would
        only add latency to every request, so rows are dropped (and counted) at once.
        """
        writer_alive = self._thread is not None and self._thread.is_alive()
        if not writer_alive or self.last_error is not None or n > self.max_pending_rows:
            return
        self._wake.set()
        self._space.wait_for(
            lambda: (
                self._pending_rows + n <= self.max_pending_rows
                or self.last_error is not None
                or self._stop.is_set()
            ),
            timeout=self.block_seconds,
        )

    def _count_drop(self, n: int) -> None:
        # The buffer is bounded so a slow or dead database cannot exhaust the worker's memory.
        self.rows_dropped += n
        PREDICTION_LOG_ROWS.labels("dropped").inc(n)
        now = time.monotonic()
        if now - self._last_drop_warning > 10:
            self._last_drop_warning = now
            log.warning(
                "prediction log buffer full (%d rows); dropping rows (total dropped %d)",
                self.max_pending_rows,
                self.rows_dropped,
            )

    @property
    def pending_rows(self) -> int:
        """Rows answered but not yet written."""
        return self._pending_rows

    # -- background side ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the flusher thread (idempotent) and flush once more at interpreter exit."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        if not self._atexit_registered:  # a last flush even when no shutdown hook runs
            atexit.register(self.close)
            self._atexit_registered = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the flusher must outlive database outages
                log.exception("prediction log flush failed; will retry")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write everything still buffered (graceful shutdown)."""
        if self._atexit_registered:
            atexit.unregister(self.close)
            self._atexit_registered = False
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._space.notify_all()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            self.flush()
        except Exception:  # shutdown must go on; the error is logged
            log.exception("final prediction log flush failed; %d rows lost", self._pending_rows)

    def ensure_tables(self) -> None:
        """Bring the database schema up to date if needed (once per writer)."""
        if not self._tables_ready:
            db.ensure_schema(self.engine)
            self._tables_ready = True

    def flush(self) -> int:
        """Write every buffered request now, chunk by chunk; returns the number of rows written.

        Requests recorded while it runs are written too; it returns once the buffer is empty.
        """
        written = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    chunk = self._take_chunk()
                    self._space.notify_all()
                if not chunk:
                    return written
                try:
                    self.ensure_tables()
                    rows = self._write(chunk)
                except Exception as exc:
                    with self._lock:
                        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                        self._space.notify_all()  # waiting requests stop waiting and drop
                    self._requeue(chunk)
                    raise
                self.last_error = None
                self.last_flush_at = time.time()
                self.rows_written += rows
                written += rows
                PREDICTION_LOG_ROWS.labels("written").inc(rows)

    def _take_chunk(self) -> list[_Pending]:
        """Take up to max_rows_per_statement rows (at least one request) off the buffer; called
        holding the lock."""
        chunk: list[_Pending] = []
        rows = 0
        pending = self._pending
        while pending and (
            not chunk or rows + len(pending[0].inputs) <= self.max_rows_per_statement
        ):
            item = pending.popleft()
            chunk.append(item)
            rows += len(item.inputs)
        self._pending_rows -= rows
        return chunk

    def _requeue(self, batch: list[_Pending]) -> None:
        # Put the failed batch back in front of newer requests, within the memory bound.
        with self._lock:
            room = self.max_pending_rows - self._pending_rows
            keep: list[_Pending] = []
            lost = 0
            for item in batch:
                n = len(item.inputs)
                if n <= room:
                    keep.append(item)
                    room -= n
                else:
                    lost += n
            self._pending.extendleft(reversed(keep))
            self._pending_rows += sum(len(item.inputs) for item in keep)
        if lost:
            self._count_drop(lost)

    def _write(self, chunk: list[_Pending]) -> int:
        bulk = self._statements.for_dialect(self.engine.dialect.name)
        # Build the statement before taking any lock: only the database work happens in it.
        if bulk is not None:
            run = bulk(chunk)
        else:
            rows = [row for item in chunk for row in self._statements.row_dicts(item)]

            def run(conn):
                return conn.execute(prediction_log.insert(), rows)

        # One transaction per chunk: a failure rolls it back and the chunk is retried.
        with self._writer_turn(), self.engine.begin() as conn:
            run(conn)
        return sum(len(item.inputs) for item in chunk)

    @contextlib.contextmanager
    def _writer_turn(self):
        """For a SQLite file: queue behind other processes' writers on an flock.

        SQLite lets one writer in at a time and makes the others poll with growing sleeps, so
        the lock sits idle between two workers' flushes; the kernel hands an flock over at
        once. Other databases lock rows themselves: nothing to do.
        """
        path = self._lock_path
        if path is None:
            yield
            return
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_lock_path(engine: Engine) -> str | None:
    """The writers' lock file next to a SQLite database file (None for other databases)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    return f"{url.database}.prediction-log.lock"
