"""The prediction log: buffered writes, SQLite and PostgreSQL, and GET /predictions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url

from app.runtime import get_runtime
from core.db import make_engine
from core.prediction_log import PredictionLogWriter, prediction_log, recent
from core.specs import HOUSING, IRIS, MODEL_SPECS
from tests import procs
from tests.api.conftest import ADMIN, example, pg_admin_url
from tests.conftest import IN_CI

IRIS_X = np.array([[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]])
IRIS_OUT = np.array([[0.9, 0.08, 0.02, 0.0], [0.0, 0.1, 0.9, 2.0]])  # probabilities + label
HOUSING_X = np.array([list(HOUSING.example_row().values())])


def _writer(engine: Engine, **kwargs) -> PredictionLogWriter:
    return PredictionLogWriter(engine, MODEL_SPECS.values(), flush_seconds=60, **kwargs)


def _exercise(engine: Engine) -> None:
    writer = _writer(engine)
    writer.record("req-1", "iris", "3", IRIS_X, IRIS_OUT, 1.25)
    writer.record("req-2", "housing", "7", HOUSING_X, np.array([4.41]), 2.5)
    no_proba = np.column_stack([np.full((1, 3), np.nan), [1.0]])
    writer.record("req-3", "iris", "4", IRIS_X[:1], no_proba, 0.5)
    assert writer.pending_rows == 4
    assert writer.flush() == 4 and writer.pending_rows == 0
    rows = recent(engine, limit=10)
    assert [r["request_id"] for r in rows] == ["req-3", "req-2", "req-1", "req-1"]
    iris_rows = recent(engine, model="iris", limit=10)
    assert {r["request_id"] for r in iris_rows} == {"req-1", "req-3"}
    first, second = sorted(
        (r for r in iris_rows if r["request_id"] == "req-1"), key=lambda r: r["row_index"]
    )
    assert first["inputs"] == dict(zip(IRIS.feature_names, IRIS_X[0].tolist(), strict=True))
    assert first["output"] == {
        "label": "setosa",
        "probabilities": {"setosa": 0.9, "versicolor": 0.08, "virginica": 0.02},
    }
    assert second["row_index"] == 1 and second["output"]["label"] == "virginica"
    assert first["version"] == "3" and first["latency_ms"] == 1.25
    assert first["created_at"].endswith("Z")
    labels_only = next(r for r in iris_rows if r["request_id"] == "req-3")
    assert labels_only["output"] == {"label": "versicolor", "probabilities": None}
    housing = recent(engine, model="housing", limit=1)[0]
    assert housing["output"] == 4.41 and housing["inputs"]["Latitude"] == 37.88
    assert recent(engine, limit=1)[0]["request_id"] == "req-3"


def test_sqlite_writer_round_trip(tmp_path):
    _exercise(make_engine(f"sqlite:///{tmp_path / 'log.db'}"))


def test_generic_fallback_writes_the_same_rows(tmp_path, monkeypatch):
    from core.prediction_log import statements

    monkeypatch.setattr(statements.Statements, "for_dialect", lambda self, name: None)
    _exercise(make_engine(f"sqlite:///{tmp_path / 'log.db'}"))


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A throwaway database on the local PostgreSQL server (dropped afterwards)."""
    admin_url = pg_admin_url()
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if IN_CI:
            raise AssertionError(f"PostgreSQL at {admin_url} is required in CI: {exc}") from exc
        pytest.skip(f"no PostgreSQL at {admin_url}: {exc}")
    name = f"test_plog_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(admin_url).set(database=name).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgresql_writer_round_trip(postgres_engine):
    _exercise(postgres_engine)


def test_full_buffer_drops_and_counts(tmp_path):
    writer = _writer(make_engine(f"sqlite:///{tmp_path / 'log.db'}"), max_pending_rows=3)
    writer.record("a", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
    writer.record("b", "iris", "1", IRIS_X, IRIS_OUT, 1.0)  # would make 4 > 3
    assert writer.pending_rows == 2 and writer.rows_dropped == 2
    assert writer.flush() == 2


def test_failed_flush_keeps_rows_for_the_next_one(tmp_path):
    path = tmp_path / "missing-dir" / "log.db"
    engine = make_engine(f"sqlite:///{path}")
    writer = _writer(engine)
    writer.record("a", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
    path.parent.rmdir()  # the database cannot be opened now
    with pytest.raises(Exception):  # noqa: B017 - any database error
        writer.flush()
    assert writer.pending_rows == 2 and writer.last_error
    path.parent.mkdir()
    assert writer.flush() == 2 and writer.last_error is None


def test_close_flushes_what_is_buffered(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = _writer(engine)
    writer.start()
    writer.record("a", "housing", "1", HOUSING_X, np.array([1.0]), 1.0)
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(prediction_log)).scalar() == 1


def test_predictions_endpoint_returns_logged_rows(api_app, client):
    request_id = f"plog-{uuid.uuid4().hex[:8]}"
    body = {"instances": [example("iris"), example("iris")]}
    client.post("/predict/iris", json=body, headers={"X-Request-ID": request_id})
    client.post("/predict/housing", json=example("housing"))
    get_runtime(api_app).prediction_log.flush()

    listed = client.get("/predictions?model=iris&limit=5", headers=ADMIN)
    assert listed.status_code == 200
    entries = listed.get_json()["predictions"]
    assert listed.get_json()["count"] == len(entries) <= 5
    mine = [e for e in entries if e["request_id"] == request_id]
    assert sorted(e["row_index"] for e in mine) == [0, 1]
    assert all(e["model"] == "iris" and e["version"] == "1" for e in entries)
    assert mine[0]["inputs"] == example("iris") and mine[0]["output"]["label"] == "setosa"
    assert mine[0]["latency_ms"] > 0

    newest = client.get("/predictions?limit=1", headers=ADMIN).get_json()["predictions"]
    assert newest[0]["model"] == "housing"
    bad = client.get("/predictions?limit=5000&model=wine", headers=ADMIN)
    assert bad.status_code == 422 and {"limit", "model"} <= set(bad.get_json()["errors"])


def test_full_buffer_waits_for_a_healthy_writer_instead_of_dropping(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = _writer(engine, max_pending_rows=3)
    writer.start()
    try:
        writer.record("a", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        # 2 + 2 > 3: this call wakes the writer and waits for the buffer to empty.
        writer.record("b", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        assert writer.rows_dropped == 0
    finally:
        writer.close()
    assert writer.rows_written == 4


def test_full_buffer_with_a_failing_database_drops_without_waiting(tmp_path):
    path = tmp_path / "gone" / "log.db"
    writer = _writer(make_engine(f"sqlite:///{path}"), max_pending_rows=3, block_seconds=30)
    writer.start()
    try:
        writer.record("a", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        path.parent.rmdir()
        with pytest.raises(Exception):  # noqa: B017 - any database error
            writer.flush()
        started = time.monotonic()
        writer.record("b", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        writer.record("c", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        assert time.monotonic() - started < 1.0
        assert writer.rows_dropped >= 2
    finally:
        path.parent.mkdir(exist_ok=True)
        writer.close()


# Floats that must come back bit for bit, and ids that COPY's text format would split on.
AWKWARD_X = np.array([[0.1 + 0.2, 1e-300, 123456789.123456789, 5e-324]])
AWKWARD_OUT = (np.array([[1 / 3, 2 / 3, 0.0]]), np.array([[1]]))


def _exact_round_trip(engine: Engine) -> None:
    writer = _writer(engine, max_rows_per_statement=2)
    writer.record("tab\there back\\slash", "iris", "v\n1", AWKWARD_X, AWKWARD_OUT, 0.1 + 0.2)
    writer.record("req-2", "housing", "7", HOUSING_X, np.array([1 / 3]), 1.0)
    assert writer.flush() == 2
    rows = {r["request_id"]: r for r in recent(engine, limit=10)}
    odd = rows["tab\there back\\slash"]
    assert odd["inputs"] == dict(zip(IRIS.feature_names, AWKWARD_X[0].tolist(), strict=True))
    assert odd["output"]["probabilities"] == dict(
        zip(IRIS.classes, [1 / 3, 2 / 3, 0.0], strict=True)
    )
    assert odd["version"] == "v\n1" and odd["latency_ms"] == 0.1 + 0.2
    assert rows["req-2"]["output"] == 1 / 3


def test_sqlite_round_trip_is_exact(tmp_path):
    _exact_round_trip(make_engine(f"sqlite:///{tmp_path / 'log.db'}"))


def test_postgresql_copy_round_trip_is_exact(postgres_engine):
    _exact_round_trip(postgres_engine)


def test_a_full_buffer_waits_for_one_chunk_to_be_taken_not_for_a_whole_flush(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = _writer(engine, max_pending_rows=4, max_rows_per_statement=2, block_seconds=30)
    writes: list[list[str]] = []
    proceed = threading.Semaphore(0)
    write = writer._write

    def gated_write(chunk):
        writes.append([item.request_id for item in chunk])
        assert proceed.acquire(timeout=30), "the test never let this write go"
        return write(chunk)

    writer._write = gated_write
    writer.start()
    try:
        writer.record("a", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        writer.record("b", "iris", "1", IRIS_X, IRIS_OUT, 1.0)  # the buffer is full now
        waiter = threading.Thread(
            target=writer.record, args=("c", "iris", "1", IRIS_X, IRIS_OUT, 1.0)
        )
        waiter.start()
        # "c" waits for room; the writer takes one chunk ("a") off the buffer, and the room
        # is there before that chunk is written.
        waiter.join(20)
        assert not waiter.is_alive()
        procs.wait_until(lambda: writes == [["a"]], 20, "the writer to start on chunk a")
        assert writer.rows_written == 0 and writer.rows_dropped == 0
        assert writer.pending_rows == 4
    finally:
        for _ in range(10):
            proceed.release()
        writer.close()
    assert writes == [["a"], ["b"], ["c"]]  # one request of 2 rows per chunk of at most 2
    assert writer.rows_written == 6
    order = [r["request_id"] for r in reversed(recent(engine, limit=10))]
    assert order == ["a", "a", "b", "b", "c", "c"]
