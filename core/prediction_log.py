"""The prediction log: one database row per predicted row, written off the request path.

Requests call PredictionLogWriter.record() with the numpy arrays they already hold (validated
inputs, model outputs); it only appends a reference to an in-memory buffer, so a 10,000-row
batch costs the request O(1) and the buffer holds compact arrays, not per-row Python objects.
A background thread flushes every few seconds (or sooner when the buffer grows) and a final
flush runs on graceful shutdown. A flush serialises each model's pending requests into ONE JSON
document (orjson, numpy-native) and lets the database explode it into rows (SQLite json_each,
PostgreSQL jsonb_array_elements), so per-row work happens in C inside the database.

Row layout of the outputs passed to record() (one array, or a tuple of column blocks that the
writer thread joins), per model task:
  regression      (n,) or (n, 1): [prediction]
  classification  (n, k + 1): [p(class_0) .. p(class_k-1), label index], classes in the spec's
                  order; probabilities are NaN when the model has no predict_proba.
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
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    TextClause,
    select,
    text,
)
from sqlalchemy.engine import Engine

from core import db
from core.metrics import PREDICTION_LOG_ROWS
from core.specs import ModelSpec

log = logging.getLogger(__name__)


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


def _lit(value: str) -> str:
    """A SQL string literal (names come from core.specs; quoted anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _case(selector: str, branches: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {_lit(model)} THEN {expr}" for model, expr in branches.items())
    return f"CASE {selector} {whens} END"


class _Statements:
    """The INSERT ... SELECT that explodes a flush's JSON document into rows, per dialect.

    One statement covers every model (a CASE on the row's model picks its expressions), so rows
    are inserted in the order the requests were answered.
    """

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.sqlite = text(self._sqlite())
        self.postgresql = text(self._postgresql())

    @staticmethod
    def _output(spec: ModelSpec, col: str, obj: str, arrow_text: str, has_proba: str) -> str:
        nf = len(spec.features)
        if spec.task == "regression":
            return col.format(nf)
        k = len(spec.classes)
        whens = " ".join(f"WHEN {i} THEN {_lit(c)}" for i, c in enumerate(spec.classes))
        label = f"CASE CAST(CAST({arrow_text.format(nf + k)} AS REAL) AS INTEGER) {whens} END"
        probs = ", ".join(f"{_lit(c)}, {col.format(nf + i)}" for i, c in enumerate(spec.classes))
        return (
            f"{obj}('label', {label}, 'probabilities', "
            f"CASE WHEN {has_proba} THEN {obj}({probs}) END)"
        )

    @staticmethod
    def _inputs(spec: ModelSpec, col: str, obj: str) -> str:
        pairs = ", ".join(f"{_lit(n)}, {col.format(j)}" for j, n in enumerate(spec.feature_names))
        return f"{obj}({pairs})"

    def _columns(self, model: str, col: str, obj: str, txt: str, has_proba: str) -> str:
        inputs = {m: self._inputs(s, col, obj) for m, s in self.specs.items()}
        outputs = {m: self._output(s, col, obj, txt, has_proba) for m, s in self.specs.items()}
        return f"{_case(model, inputs)}, {_case(model, outputs)}"

    def _sqlite(self) -> str:
        columns = self._columns(
            "req.model",
            "item.value -> {}",
            "json_object",
            "item.value ->> {}",
            "req.has_proba",
        )
        # The CTE reads each request's fields once; reading them per row would re-parse the
        # whole request for every row (quadratic in the batch size).
        return (
            "WITH req AS MATERIALIZED ("
            " SELECT key AS k, value ->> 0 AS request_id, value ->> 1 AS model,"
            " value ->> 2 AS version, value ->> 3 AS latency_ms, value ->> 4 AS ts,"
            " value ->> 5 AS has_proba, value -> 6 AS rows"
            " FROM json_each(:doc))"
            " INSERT INTO prediction_log"
            " (request_id, model, version, row_index, inputs, output, latency_ms, created_at)"
            f" SELECT req.request_id, req.model, req.version, item.key, {columns},"
            # Epoch seconds -> the text form SQLAlchemy's SQLite DateTime reads, to the µs.
            " req.latency_ms, strftime('%Y-%m-%d %H:%M:%S', req.ts, 'unixepoch')"
            " || printf('.%06d', CAST((req.ts - CAST(req.ts AS INTEGER)) * 1000000 AS INTEGER))"
            " FROM req, json_each(req.rows) AS item"
            " ORDER BY req.k, item.key"
        )

    def _postgresql(self) -> str:
        columns = self._columns(
            "r.req ->> 1",
            "i.elem -> {}",
            "jsonb_build_object",
            "i.elem ->> {}",
            "(r.req ->> 5)::boolean",
        )
        return (
            "INSERT INTO prediction_log"
            " (request_id, model, version, row_index, inputs, output, latency_ms, created_at)"
            f" SELECT r.req ->> 0, r.req ->> 1, r.req ->> 2, (i.ord - 1)::int, {columns},"
            " (r.req ->> 3)::float8, to_timestamp((r.req ->> 4)::float8)"
            " FROM jsonb_array_elements(CAST(:doc AS jsonb)) WITH ORDINALITY AS r(req, rord),"
            " jsonb_array_elements(r.req -> 6) WITH ORDINALITY AS i(elem, ord)"
            " ORDER BY r.rord, i.ord"
        )

    def for_dialect(self, name: str) -> TextClause | None:
        """The statement of dialect name, or None (generic row-by-row fallback)."""
        return {"sqlite": self.sqlite, "postgresql": self.postgresql}.get(name)

    def row_dicts(self, item: _Pending) -> list[dict[str, Any]]:
        """Plain rows for databases without a JSON-exploding statement (slow, portable)."""
        spec = self.specs[item.model]
        names, classes = spec.feature_names, spec.classes
        nf, created = len(names), datetime.fromtimestamp(item.created, UTC)
        rows = []
        for i, row in enumerate(item.matrix().tolist()):
            if spec.task == "regression":
                output: Any = row[nf]
            else:
                probs = row[nf : nf + len(classes)]
                output = {
                    "label": classes[int(row[-1])],
                    "probabilities": None
                    if np.isnan(probs[0])
                    else dict(zip(classes, probs, strict=True)),
                }
            rows.append(
                {
                    "request_id": item.request_id,
                    "model": item.model,
                    "version": item.version,
                    "row_index": i,
                    "inputs": dict(zip(names, row[:nf], strict=True)),
                    "output": output,
                    "latency_ms": item.latency_ms,
                    "created_at": created,
                }
            )
        return rows


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
        max_rows_per_statement: int = 20_000,
        block_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self._statements = _Statements(specs)
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
        """Create the table if missing (once per writer)."""
        if not self._tables_ready:
            db.create_tables(self.engine)
            self._tables_ready = True

    def flush(self) -> int:
        """Write every buffered request now; returns the number of rows written."""
        with self._flush_lock:
            with self._lock:
                if not self._pending:
                    return 0
                batch = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
                self._space.notify_all()
            try:
                self.ensure_tables()
                written = self._write(batch)
            except Exception as exc:
                with self._lock:
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    self._space.notify_all()  # waiting requests stop waiting and drop
                self._requeue(batch)
                raise
            self.last_error = None
            self.last_flush_at = time.time()
            self.rows_written += written
            PREDICTION_LOG_ROWS.labels("written").inc(written)
            return written

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

    def _write(self, batch: list[_Pending]) -> int:
        statement = self._statements.for_dialect(self.engine.dialect.name)
        chunks = list(_chunks(batch, self.max_rows_per_statement))
        # Serialise before taking any lock: only the database work happens while holding it.
        if statement is not None:
            params = [{"doc": _document(chunk)} for chunk in chunks]
        else:
            rows = [
                row
                for chunk in chunks
                for item in chunk
                for row in self._statements.row_dicts(item)
            ]
        # One transaction per flush: a failure rolls everything back and the batch is retried.
        with self._writer_turn(), self.engine.begin() as conn:
            if statement is not None:
                for param in params:
                    conn.execute(statement, param)
            else:
                conn.execute(prediction_log.insert(), rows)
        return sum(len(item.inputs) for item in batch)

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


def _chunks(items: list[_Pending], max_rows: int):
    chunk: list[_Pending] = []
    rows = 0
    for item in items:
        chunk.append(item)
        rows += len(item.inputs)
        if rows >= max_rows:
            yield chunk
            chunk, rows = [], 0
    if chunk:
        yield chunk


def _document(chunk: list[_Pending]) -> str:
    """[[request_id, model, version, latency_ms, epoch, has_proba, [[inputs..., outputs...]]]]."""
    doc = [
        (
            p.request_id,
            p.model,
            p.version,
            p.latency_ms,
            p.created,
            p.has_probabilities,
            p.matrix(),
        )
        for p in chunk
    ]
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def recent(engine: Engine, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest logged rows first, optionally for one model."""
    query = select(prediction_log).order_by(prediction_log.c.id.desc()).limit(limit)
    if model is not None:
        query = query.where(prediction_log.c.model == model)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        entry = dict(row)
        created = entry["created_at"]
        if created.tzinfo is None:  # SQLite keeps no zone; we always store UTC
            created = created.replace(tzinfo=UTC)
        entry["created_at"] = created.isoformat().replace("+00:00", "Z")
        out.append(entry)
    return out


def recent_inputs(engine: Engine, spec: ModelSpec, limit: int) -> np.ndarray:
    """The newest `limit` logged input rows of a model (any version), in feature order."""
    cols = prediction_log.c
    query = select(cols.inputs).where(cols.model == spec.name).order_by(cols.id.desc()).limit(limit)
    names = spec.feature_names
    with engine.connect() as conn:
        rows = [
            [inputs.get(name) for name in names]
            for (inputs,) in conn.execute(query)
            if isinstance(inputs, dict)
        ]
    if not rows:
        return np.empty((0, len(names)))
    # None (a row logged before a feature existed) becomes NaN; such rows are dropped.
    matrix = np.asarray(rows, dtype=float)
    return matrix[~np.isnan(matrix).any(axis=1)]


class Pruned(NamedTuple):
    """What one prune removed: rows, and the delete transactions that removed them."""

    deleted: int
    batches: int


def prune(
    engine: Engine, cutoff: datetime, batch_rows: int, table: Table = prediction_log
) -> Pruned:
    """Delete rows created before cutoff, oldest first, batch_rows per short transaction.

    table is the prediction log or another table with an integer `id` growing with its
    `created_at` (the monitor reports).
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
