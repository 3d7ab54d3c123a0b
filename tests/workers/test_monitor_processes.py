"""The monitor as deployed: its own redis-server, a monitor worker consuming only the monitoring
queue, and one beat process, against a private state dir whose logged inputs have drifted."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core import broker, drift, jobs, monitor_reports, registry
from core.db import make_engine
from core.specs import HOUSING
from tests import procs
from tests.workers.conftest import RedisServer, private_state
from tests.workers.test_monitor import (
    MONITOR_PARAMS,
    log_predictions,
    new_champion,
    training_rows,
    write_params,
)

pytestmark = pytest.mark.slow

CELERY = str(Path(sys.executable).with_name("celery"))


def metric_samples(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample the worker's /metrics shows, by (name, sorted labels)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def alive(*processes) -> Callable[[], None]:
    """A check that fails at once, with its log, when one of the processes has exited."""

    def check() -> None:
        for proc in processes:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[3]} exited:\n{procs.tail(proc)}")

    return check


def test_monitor_worker_and_beat_retrain_a_drifted_model(trained_registry, tmp_path, monkeypatch):
    env = private_state(trained_registry, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    registry.configure(env["MLFLOW_TRACKING_URI"])
    engine = make_engine(env["DATABASE_URL"])
    redis = RedisServer(tmp_path / "redis")
    started = []
    try:
        reference = drift.build_reference(
            training_rows(trained_registry, HOUSING), HOUSING.feature_names
        )
        version = new_champion(HOUSING, tmp_path / "artifacts", reference)
        jobs.ensure_schema(engine)
        x = training_rows(trained_registry, HOUSING)[:600].copy()
        x[:, HOUSING.feature_names.index("MedInc")] *= 3  # incomes tripled: a clear shift
        log_predictions(engine, HOUSING, version, x, np.full(len(x), 2.0))
        # A retrain job whose worker died: a retrain worker's sweeper would take it back; the
        # monitor worker must leave it alone (it locks iris, which has no logged rows anyway).
        orphan = jobs.submit(engine, "iris", trigger="api").job_id
        assert jobs.claim(engine, orphan, "retrain@gone", 2**22, lambda _: False).job
        workspace = write_params(trained_registry, tmp_path / "workspace", MONITOR_PARAMS)

        redis.start()
        port = procs.free_port()
        penv = {
            **trained_registry.env,
            **env,
            "REDIS_URL": redis.url,
            "PIPELINE_WORKSPACE": str(workspace),
            "WORKER_METRICS_PORT": str(port),
            "MONITOR_INTERVAL_SECONDS": "2",
            "RETENTION_INTERVAL_SECONDS": "2",
            "JOB_STALE_SECONDS": "1",
            "JOB_SWEEP_SECONDS": "1",
        }
        worker_cmd = [CELERY, "-A", "workers.make_celery", "worker", "-Q", "monitoring"]
        worker_cmd += ["-n", "monitor@%h", "--pool", "prefork", "--concurrency", "1"]
        worker_cmd += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        beat_cmd = [CELERY, "-A", "workers.make_celery", "beat", "--loglevel", "INFO"]
        beat_cmd += ["--schedule", str(tmp_path / "celerybeat-schedule")]
        worker = procs.start(worker_cmd, penv, tmp_path / "monitor.log")
        started.append(worker)
        beat = procs.start(beat_cmd, penv, tmp_path / "beat.log")
        started.append(beat)
        running = alive(worker, beat)

        def drift_job() -> jobs.Job | None:
            running()
            report = monitor_reports.latest(engine, monitor_reports.DRIFT, "housing")
            if report is None or report["status"] != "drift":
                return None
            found = [j for j in jobs.recent(engine) if j.trigger == "drift"]
            return found[0] if found else None

        job = procs.wait_until(drift_job, 90, "a drift report and a drift retrain job")
        assert job.model == "housing" and job.state == "queued" and "MedInc" in job.reason
        # Its message waits on the retrain queue for a retrain worker (none runs here). The
        # record is written before the message is published: wait for the message, in order.
        procs.wait_until(
            lambda: running() or job.job_id in broker.pending_task_ids(redis.url),
            30,
            f"drift job {job.job_id}'s message on the retrain queue",
        )

        psi = ("model_feature_drift_psi", (("feature", "MedInc"), ("model", "housing")))
        shown = procs.wait_until(
            lambda: running() or metric_samples(port).get(psi),
            30,
            "the monitor worker's /metrics to show the MedInc PSI",
        )
        report = monitor_reports.latest(engine, monitor_reports.DRIFT, "housing")
        assert shown == pytest.approx(report["features"]["MedInc"]) and shown > 0.25

        # Beat keeps checking every 2 s; the cool-down keeps it at one job.
        checks = ("monitor_runs_total", (("outcome", "success"), ("task", "check")))
        cooldown = (
            "retrain_auto_triggers_total",
            (("model", "housing"), ("outcome", "cooldown"), ("trigger", "drift")),
        )

        def cooled_down() -> bool:
            running()
            samples = metric_samples(port)
            return samples.get(checks, 0) >= 3 and samples.get(cooldown, 0) >= 2

        procs.wait_until(cooled_down, 60, "two more checks that meet the cool-down")
        assert [j.job_id for j in jobs.recent(engine) if j.trigger == "drift"] == [job.job_id]
        # Retention ran on its own schedule and found nothing old.
        retention = monitor_reports.latest(engine, monitor_reports.RETENTION, "*")
        assert retention is not None and retention["deleted"] == 0
        # Only retrain workers reconcile jobs: the orphan is untouched.
        left = jobs.get(engine, orphan)
        assert (left.state, left.attempts) == ("running", 1), left
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        redis.close()
        engine.dispose()
        registry.configure(trained_registry.tracking_uri)
