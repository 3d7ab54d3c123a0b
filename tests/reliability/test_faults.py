"""Fault injection on real processes: Redis dies, a corrupted model is promoted by hand, the API
gets SIGTERM under load, and the MLflow database is missing or locked when the API starts.

One stack for most of the module (private redis-server, one Celery worker process, gunicorn with
2 workers, a private registry copy); tests run in file order and the SIGTERM test, which ends the
shared gunicorn, runs last. Guarantees proven elsewhere are not repeated here: the hot swap, a
broken pickled champion and the sequential SIGTERM flush (tests/api/test_gunicorn.py), a worker
SIGKILLed mid-retrain and a Redis outage seen by one in-process app
(tests/workers/test_retrain_e2e.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import redis
import requests
from filelock import FileLock
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from core import jobs, registry
from core.broker import pending_task_ids
from core.specs import ALIAS_CHAMPION, IRIS, MODEL_SPECS
from tests import procs
from tests.api.conftest import ADMIN, Gunicorn, GunicornLauncher
from tests.conftest import TrainedRegistry, registry_env
from tests.reliability.faults_support import (
    SqliteLocker,
    Traffic,
    assert_aliases_consistent,
    metric_sample,
)
from tests.workers.conftest import RedisServer, WorkerProcess, private_state

pytestmark = pytest.mark.slow

REFRESH_SECONDS = 1.0  # what GunicornLauncher configures
SWEEP_SECONDS = 1.0  # the worker's reconciler runs this often here ...
LOST_AFTER_SECONDS = 2.0  # ... and republishes a queued job whose message is gone this long
JOB_TIMEOUT = 90.0
ERROR_KEYS = {"code", "status", "message"}


@dataclass
class Stack:
    """The running services of the module and where their state lives."""

    server: Gunicorn
    worker: WorkerProcess
    redis: RedisServer
    workspace: Path
    root: Path


def _pipeline_lock(workspace: Path) -> FileLock:
    """The lock run_pipeline holds for a whole run: holding it parks a job inside the worker."""
    return FileLock(str(workspace / ".dvc" / "tmp" / "pipeline-run.lock"))


@pytest.fixture(scope="module")
def stack(trained_registry: TrainedRegistry, tmp_path_factory) -> Iterator[Stack]:
    """Private Redis, registry and workspace copies, one Celery worker, gunicorn (2 workers)."""
    root = tmp_path_factory.mktemp("faults")
    env = private_state(trained_registry, root)
    workspace = root / "workspace"
    shutil.copytree(trained_registry.workspace, workspace, symlinks=True)
    broker = RedisServer(root / "redis")
    worker = WorkerProcess({}, root)
    launcher = GunicornLauncher(root)
    # This process moves aliases in the private registry copy too.
    with procs.environ(env), contextlib.ExitStack() as cleanup:
        registry.configure(env["MLFLOW_TRACKING_URI"])
        cleanup.callback(registry.configure, trained_registry.tracking_uri)
        cleanup.callback(broker.close)
        cleanup.callback(worker.close)
        cleanup.callback(launcher.close)
        broker.start()
        base = {**trained_registry.env, **env, "REDIS_URL": broker.url}
        worker.env = {
            **base,
            "PIPELINE_WORKSPACE": str(workspace),
            "WORKER_METRICS_PORT": "0",
            "WORKER_PROMETHEUS_DIR": str(root / "worker-metrics"),
            "JOB_HEARTBEAT_SECONDS": "1",
            "JOB_STALE_SECONDS": "8",
            "JOB_SWEEP_SECONDS": str(SWEEP_SECONDS),
            "JOB_LOST_AFTER_SECONDS": str(LOST_AFTER_SECONDS),
        }
        worker.start()
        # Job records live in the database the worker writes: the API must read the same one.
        server = launcher.start(base, DATABASE_URL=env["DATABASE_URL"])
        yield Stack(server, worker, broker, workspace, root)


# -- helpers ------------------------------------------------------------------------------------
def submit(server: Gunicorn, model: str, force: bool = False) -> str:
    """POST /retrain and return the job id (asserting 202)."""
    response = server.post("/retrain", json={"model": model, "force": force}, headers=ADMIN)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job_state(server: Gunicorn, job_id: str) -> dict[str, Any]:
    """GET /jobs/<id>."""
    response = server.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def finished(stack: Stack, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    """Poll the job until it succeeded or failed."""

    def done() -> dict[str, Any] | None:
        job = job_state(stack.server, job_id)
        return job if job["state"] in jobs.FINAL_STATES else None

    try:
        return procs.wait_until(done, timeout, f"job {job_id} to finish", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{stack.worker.log_tail()}") from None


def health_of_every_worker(server: Gunicorn, wanted: str, timeout: float) -> dict[int, dict]:
    """Poll /health until every gunicorn worker answered with overall status `wanted`."""
    seen: dict[int, dict] = {}
    workers = server.worker_pids()

    def all_said_it() -> bool:
        body = server.get("/health").json()
        if body["status"] == wanted:
            seen[body["checks"]["process"]["pid"]] = body
        return workers <= seen.keys()

    procs.wait_until(all_said_it, timeout, f"every worker's /health to say {wanted}", 0.02)
    return seen


def redis_client(server: RedisServer) -> redis.Redis:
    """A client of the private redis-server that gives up fast."""
    return redis.Redis(port=server.port, socket_timeout=1, socket_connect_timeout=1)


def reload_failures(server: Gunicorn, model: str) -> float:
    """model_reloads_total{outcome="failure"} summed over the workers."""
    key = f'model_reloads_total{{model="{model}",outcome="failure"}}'
    return metric_sample(server.get("/metrics").text, key)


def assert_error_shape(response: requests.Response, status: int) -> None:
    """The one error shape of the API, with the expected status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body.keys() >= ERROR_KEYS and body["code"] == status, body


# -- 1. Redis killed and restarted under traffic ------------------------------------------------
def test_redis_killed_and_restarted_under_traffic(stack: Stack):
    server, broker = stack.server, stack.redis
    known = {j["job_id"] for j in server.get("/jobs?limit=200").json()["jobs"]}
    traffic = Traffic(server.base_url, "redis")
    traffic.start()
    try:
        procs.wait_until(lambda: len(traffic.answers) >= 20, 15, "traffic before the outage")

        # Outage 1, nothing queued: health degrades in every worker, retrains fail fast.
        broker.stop()
        down = health_of_every_worker(server, "degraded", 10)
        assert all(h["checks"]["broker"]["status"] == "error" for h in down.values()), down
        started = time.monotonic()
        refused = server.post("/retrain", json={"model": "iris"}, headers=ADMIN)
        elapsed = time.monotonic() - started
        assert_error_shape(refused, 503)
        assert elapsed < 10, f"POST /retrain took {elapsed:.2f}s with Redis down: unbounded"
        listed = {j["job_id"] for j in server.get("/jobs?limit=200").json()["jobs"]}
        assert listed == known, "a refused retrain left a job record behind"
        broker.start()
        health_of_every_worker(server, "ok", 10)

        # Outage 2, a job queued behind a running one: Redis takes its message down with it.
        with _pipeline_lock(stack.workspace):  # the worker's only slot waits inside the run
            running = submit(server, "iris")
            procs.wait_until(
                lambda: job_state(server, running)["state"] == jobs.RUNNING, 30, "iris running"
            )
            queued = submit(server, "housing")
            assert queued in (pending_task_ids(broker.url) or set()), "published before the 202"
            marker = redis_client(broker)
            marker.set("fault-marker", "1")
            broker.stop()
            broker.start()
            assert marker.get("fault-marker") is None, "Redis kept data across the kill"
            assert job_state(server, queued)["state"] == jobs.QUEUED
            # The worker reconnects and its reconciler publishes the lost message again.
            procs.wait_until(
                lambda: queued in (pending_task_ids(broker.url) or set()),
                LOST_AFTER_SECONDS + SWEEP_SECONDS + 10,
                "the reconciler to publish the housing job again",
            )
        assert f"job {queued} was queued but its message was lost" in stack.worker.log_tail(400)
        for job_id in (running, queued):
            job = finished(stack, job_id)
            assert job["state"] == jobs.SUCCEEDED and job["attempts"] == 1, job
        # Retrains resume: one submitted after the restart runs to the end too.
        after = finished(stack, submit(server, "all"))
        assert after["state"] == jobs.SUCCEEDED, after
        mark = len(traffic.answers)
        procs.wait_until(lambda: len(traffic.answers) >= mark + 20, 15, "traffic afterwards")
    finally:
        traffic.halt()

    assert not traffic.failures, traffic.failures[:3]
    assert traffic.statuses() == {200}, [a for a in traffic.answers if a.status != 200][:3]
    for model in ("iris", "housing"):
        assert_aliases_consistent(model)


# -- 5. a corrupted artefact promoted by hand ---------------------------------------------------
def _register_copy(source_version: str, tmp_path: Path, corrupt: bool) -> str:
    """Register a copy of an iris version's artefact folder, its skops file junk if corrupt."""
    folder = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=registry.model_uri(IRIS.registered_name, source_version),
            dst_path=str(tmp_path / ("corrupt" if corrupt else "good")),
        )
    )
    skops = list(folder.rglob("*.skops"))
    assert skops, list(folder.rglob("*"))
    if corrupt:
        for path in skops:
            path.write_bytes(b"not a skops archive")
    tags = {"fault": "corrupted artefact" if corrupt else "good copy"}
    return registry.register(folder.as_uri(), IRIS.registered_name, tags).version


def test_corrupted_artefact_promoted_by_hand_keeps_the_old_version(stack: Stack, tmp_path: Path):
    server, name = stack.server, IRIS.registered_name
    serving = server.versions_by_worker("iris", 10)
    assert len(set(serving.values())) == 1
    old = next(iter(serving.values()))
    broken = _register_copy(old, tmp_path, corrupt=True)
    good = _register_copy(old, tmp_path, corrupt=False)
    failures_before = reload_failures(server, "iris")
    client = MlflowClient()  # by hand: what an operator does in the MLflow UI, no gate
    traffic = Traffic(server.base_url, "corrupt")
    traffic.start()
    try:
        procs.wait_until(lambda: len(traffic.answers) >= 20, 15, "traffic before the promotion")
        client.set_registered_model_alias(name, ALIAS_CHAMPION, broken)
        procs.wait_until(
            lambda: reload_failures(server, "iris") >= failures_before + 2,
            REFRESH_SECONDS + 10,
            "a failed load counted in each worker",
        )
        # Every worker says so, keeps serving the old version and stays ready.
        for health in health_of_every_worker(server, "degraded", 10).values():
            iris = health["checks"]["models"]["iris"]
            assert iris["version"] == old and iris["status"] == "ok", iris
            assert f"version {broken}" in (iris["last_error"] or ""), iris
        assert set(server.versions_by_worker("iris", 10).values()) == {old}
        assert server.get("/health/ready").status_code == 200

        # Moved back by hand to the version still served: the failure no longer shows.
        client.set_registered_model_alias(name, ALIAS_CHAMPION, old)
        for health in health_of_every_worker(server, "ok", REFRESH_SECONDS + 10).values():
            assert health["checks"]["models"]["iris"]["last_error"] is None, health
        mark = len(traffic.answers)

        # Then on to another good version: picked up by every worker.
        client.set_registered_model_alias(name, ALIAS_CHAMPION, good)
        procs.wait_until(
            lambda: set(server.versions_by_worker("iris", 10).values()) == {good},
            REFRESH_SECONDS + 10,
            "every worker on the good version",
        )
        for health in health_of_every_worker(server, "ok", 10).values():
            assert health["checks"]["models"]["iris"]["last_error"] is None, health
        settled = len(traffic.answers)  # answers read from here on were computed after the swap
        procs.wait_until(lambda: len(traffic.answers) >= settled + 20, 15, "traffic afterwards")
    finally:
        traffic.halt()

    assert not traffic.failures, traffic.failures[:3]
    assert traffic.statuses() == {200}, [a for a in traffic.answers if a.status != 200][:3]
    iris = [a.version for a in traffic.answers if a.model == "iris"]
    assert broken not in iris and set(iris) <= {old, good}
    assert {a.version for a in traffic.answers[:mark] if a.model == "iris"} == {old}
    assert {a.version for a in traffic.answers[settled:] if a.model == "iris"} == {good}
    assert_aliases_consistent("iris")


# -- 3. SIGTERM to the gunicorn master under concurrent load (ends the shared gunicorn) ---------
CLIENTS = 6


def test_sigterm_under_load_answers_or_refuses_and_logs_each_answer_once(stack: Stack):
    server = stack.server
    clients = [Traffic(server.base_url, f"term{i}") for i in range(CLIENTS)]
    for client in clients:
        client.stop_on_refused = True  # after shutdown nothing listens: that is the end
        client.start()
    try:
        procs.wait_until(
            lambda: all(len(c.answers) >= 20 for c in clients), 30, "every client answered"
        )
        os.kill(server.proc.pid, signal.SIGTERM)  # to the master, as an orchestrator does
        assert server.proc.wait(timeout=40) == 0, procs.tail(server.proc)
        # Once the master is gone, every client ends on a refused connection.
        procs.wait_until(lambda: not any(c.is_alive() for c in clients), 15, "clients refused")
    finally:
        for client in clients:
            client.halt()

    answers = [a for c in clients for a in c.answers]
    failures = [f for c in clients for f in c.failures]
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:3]
    not_refused = [f for f in failures if f[1] != "refused"]
    assert not not_refused, not_refused[:5]
    engine = create_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT request_id, count(*) FROM prediction_log"
                    " WHERE request_id LIKE 'term%' GROUP BY request_id"
                )
            ).all()
    finally:
        engine.dispose()
    logged = dict(rows)
    answered = {a.request_id for a in answers}
    assert set(logged) == answered, (
        f"{len(answered - set(logged))} answered but not logged, "
        f"{len(set(logged) - answered)} logged but never answered"
    )
    doubled = {rid: n for rid, n in logged.items() if n != 1}
    assert not doubled, list(doubled.items())[:5]
    drained = Path(server.proc.log_path).read_text().count("queued requests before exiting")
    print(f"\n[faults] SIGTERM: {len(answered)} answered, {len(failures)} refused, {drained=}")


# -- 4. the MLflow database missing, then locked, when the API starts ---------------------------
def _unready_everywhere(server: Gunicorn, reason: str, timeout: float) -> None:
    """Every worker is up but unready, saying reason; predictions get the one 503 error shape."""
    workers = server.worker_pids()
    seen: set[int] = set()

    def every_worker_says_it() -> bool:
        response = server.get("/health")
        assert response.status_code == 503, response.text  # no model can serve
        checks = response.json()["checks"]
        errors = [m["last_error"] or "" for m in checks["models"].values()]
        if all(m["status"] == "unavailable" for m in checks["models"].values()) and all(
            reason in error for error in errors
        ):
            seen.add(checks["process"]["pid"])
        return workers <= seen

    procs.wait_until(every_worker_says_it, timeout, f"every worker unready: {reason!r}", 0.05)
    ready = server.get("/health/ready")
    assert_error_shape(ready, 503)
    assert all(reason in str(errs) for errs in ready.json()["errors"].values()), ready.json()
    assert server.get("/health/live").status_code == 200
    for model, spec in MODEL_SPECS.items():
        assert_error_shape(server.post(f"/predict/{model}", json=spec.example_row()), 503)


def test_api_waits_for_a_missing_then_locked_registry(
    trained_registry: TrainedRegistry, tmp_path: Path
):
    state = tmp_path / "state"
    state.mkdir()
    env = registry_env(state)
    db_path = state / "mlflow.db"
    launcher = GunicornLauncher(tmp_path)
    locker: SqliteLocker | None = None
    try:
        server = launcher.start({**trained_registry.env, **env}, wait_ready=False)
        pids = server.worker_pids()
        _unready_everywhere(server, "does not exist", 30)
        assert not db_path.exists(), "the API created an empty MLflow database by itself"

        # The database arrives, but another process holds an EXCLUSIVE transaction on it.
        staged = state / "staged.db"
        shutil.copy2(trained_registry.state_dir / "mlflow.db", staged)
        locker = SqliteLocker(staged)
        staged.rename(db_path)  # same inode: the lock comes along
        _unready_everywhere(server, "locked", 30)

        locker.release()
        released = time.monotonic()
        procs.wait_all_workers_ready(server.base_url, 2, procs.START_SECONDS)
        print(f"\n[faults] both workers ready {time.monotonic() - released:.1f}s after release")
        assert server.get("/health/ready").status_code == 200
        prediction = server.post("/predict/iris", json=IRIS.example_row())
        assert prediction.status_code == 200, prediction.text
        # No crash loop: the same two workers lived through every phase, each booted once.
        assert server.proc.poll() is None and server.worker_pids() == pids
        boots = Path(server.proc.log_path).read_text().count("Booting worker")
        assert boots == 2, procs.tail(server.proc, 80)
    finally:
        if locker is not None:
            locker.release()
        launcher.close()
