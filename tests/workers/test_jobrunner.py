"""run_job and reconcile as plain functions (no Celery): outcomes, redelivery, orphans."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import timedelta

import psutil
import pytest
from prometheus_client import REGISTRY

from core import jobs
from pipeline.runner import PipelineError
from workers import config, jobrunner
from workers.reconcile import holder_is_gone, reconcile
from workers.runtime import WorkerIdentity

NODE = "retrain@test"


@pytest.fixture
def ws(tmp_path):
    return config.load().model_copy(
        update={
            "workspace": tmp_path,
            "max_attempts": 2,
            "heartbeat_seconds": 0.05,
            "stale_seconds": 30,
            "lost_after_seconds": 0,
            "busy_wait_seconds": 5,
        }
    )


@pytest.fixture
def me():
    return WorkerIdentity(NODE, os.getpid(), jobs.utcnow())


def _result(promoted: bool, up_to_date: bool = False) -> dict:
    return {
        "candidate_version": None if up_to_date else "2",
        "promoted": promoted,
        "reason": "up to date" if up_to_date else ("better" if promoted else "not better"),
        "metrics": {"rmse": 0.5},
        "champion_metrics": {"rmse": 0.6},
        "champion_version": "2" if promoted else "1",
        "up_to_date": up_to_date,
    }


def _count(model: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("retrain_jobs_total", {"model": model, "outcome": outcome})
    return value or 0.0


def test_success_records_results_stages_and_metrics(sqlite_engine, ws, me):
    job = jobs.submit(sqlite_engine, "all", force=True)
    calls = []

    def runner(**kwargs):
        calls.append(kwargs)
        kwargs["progress"]("housing", "train")
        assert jobs.get(sqlite_engine, job.job_id).stage == "train@housing"
        return {"housing": _result(True), "iris": _result(False, up_to_date=True)}

    before = _count("housing", "promoted"), _count("iris", "up_to_date")
    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, runner) == jobs.SUCCEEDED
    done = jobs.get(sqlite_engine, job.job_id)
    assert done.state == jobs.SUCCEEDED and done.stage == "done" and done.error is None
    assert done.result["housing"]["promoted"] is True
    assert done.result["iris"]["up_to_date"] is True
    assert calls[0]["models"] == ["housing", "iris"] and calls[0]["force"] is True
    assert calls[0]["run_id"] == job.job_id and calls[0]["workspace"] == ws.workspace
    assert _count("housing", "promoted") == before[0] + 1
    assert _count("iris", "up_to_date") == before[1] + 1
    # The same message delivered again does not run the pipeline again.
    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, runner).startswith("skipped")
    assert len(calls) == 1


def test_pipeline_error_fails_the_job_with_its_message(sqlite_engine, ws, me):
    job = jobs.submit(sqlite_engine, "housing")

    def runner(**kwargs):
        raise PipelineError("pipeline stage validate@housing failed: rmse 0.9 > 0.5")

    before = _count("housing", "failed")
    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, runner) == jobs.FAILED
    failed = jobs.get(sqlite_engine, job.job_id)
    assert failed.error == "pipeline stage validate@housing failed: rmse 0.9 > 0.5"
    assert _count("housing", "failed") == before + 1
    jobs.submit(sqlite_engine, "housing")  # the lock was released


def test_busy_workspace_is_waited_for_not_reported(sqlite_engine, ws, me, monkeypatch):
    monkeypatch.setattr(jobrunner, "BUSY_POLL_SECONDS", 0.01)
    job = jobs.submit(sqlite_engine, "iris")
    attempts = []

    def runner(**kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise PipelineError("pipeline stage ? failed: ERROR: Unable to acquire lock. ...")
        return {"iris": _result(False, up_to_date=True)}

    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, runner) == jobs.SUCCEEDED
    assert len(attempts) == 3


def test_busy_workspace_for_too_long_fails_clearly(sqlite_engine, ws, me, monkeypatch):
    monkeypatch.setattr(jobrunner, "BUSY_POLL_SECONDS", 0.01)
    job = jobs.submit(sqlite_engine, "iris")

    def runner(**kwargs):
        raise PipelineError("ERROR: 'x' is busy, it is being blocked by: (PID 1)")

    ws = ws.model_copy(update={"busy_wait_seconds": 0.05})
    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, runner) == jobs.FAILED
    error = jobs.get(sqlite_engine, job.job_id).error
    assert "stayed locked by another pipeline run" in error and "is busy" not in error


def test_a_redelivered_job_of_a_dead_incarnation_runs_again(sqlite_engine, ws, me):
    job = jobs.submit(sqlite_engine, "iris")
    jobs.claim(sqlite_engine, job.job_id, NODE, 999_999, lambda j: False)
    # This node restarted after the claim: the recorded holder is an earlier incarnation.
    later = dataclasses.replace(me, booted_at=jobs.utcnow() + timedelta(seconds=1))

    def runner(**kwargs):
        return {"iris": _result(False, up_to_date=True)}

    assert jobrunner.run_job(job.job_id, later, ws, sqlite_engine, runner) == jobs.SUCCEEDED
    assert jobs.get(sqlite_engine, job.job_id).attempts == 2


def test_a_job_alive_on_another_node_is_not_taken_over(sqlite_engine, ws, me):
    job = jobs.submit(sqlite_engine, "iris")
    jobs.claim(sqlite_engine, job.job_id, "other@host", 1, lambda j: False)
    assert jobrunner.run_job(job.job_id, me, ws, sqlite_engine, None).startswith(
        "skipped: already running on other@host"
    )


def test_holder_checks(me):
    now = jobs.utcnow()
    base = jobs.Job(
        job_id="x",
        model="iris",
        state=jobs.RUNNING,
        force=False,
        trigger="api",
        submitted_at=now,
        updated_at=now,
        heartbeat_at=now,
        worker="other@host",
        worker_pid=1,
    )
    assert not holder_is_gone(base, me, 30, now)
    silent = dataclasses.replace(base, heartbeat_at=now - timedelta(seconds=60))
    assert holder_is_gone(silent, me, 30)
    own_dead_pid = dataclasses.replace(base, worker=NODE, worker_pid=2**22 + 12345)
    assert holder_is_gone(own_dead_pid, dataclasses.replace(me, booted_at=now), 30, now)


def test_reconcile_requeues_orphans_then_gives_up(sqlite_engine, ws, me):
    job = jobs.submit(sqlite_engine, "housing")
    jobs.claim(sqlite_engine, job.job_id, "gone@host", 1, lambda j: False)
    jobs.set_stage(sqlite_engine, job.job_id, 1, "train@housing")
    published = []
    later = jobs.utcnow() + timedelta(seconds=ws.stale_seconds + 1)

    summary = reconcile(sqlite_engine, me, ws, published.append, lambda: set(), now=later)
    assert summary.requeued == [job.job_id] and published == [job.job_id]
    requeued = jobs.get(sqlite_engine, job.job_id)
    assert requeued.state == jobs.QUEUED
    assert "worker gone@host" in requeued.error and "train@housing" in requeued.error

    # Second attempt also dies; with max_attempts=2 the reconciler now fails the job.
    jobs.claim(sqlite_engine, job.job_id, "gone@host", 1, lambda j: False)
    later = jobs.utcnow() + timedelta(seconds=ws.stale_seconds + 1)
    summary = reconcile(sqlite_engine, me, ws, published.append, lambda: set(), now=later)
    assert summary.failed == [job.job_id]
    failed = jobs.get(sqlite_engine, job.job_id)
    assert failed.state == jobs.FAILED and "gave up after 2 attempts" in failed.error


def test_reconcile_republishes_only_lost_queued_messages(sqlite_engine, ws, me):
    lost = jobs.submit(sqlite_engine, "housing")
    waiting = jobs.submit(sqlite_engine, "iris")
    published = []
    later = jobs.utcnow() + timedelta(seconds=1)
    summary = reconcile(
        sqlite_engine, me, ws, published.append, lambda: {waiting.job_id}, now=later
    )
    assert summary.republished == [lost.job_id] and published == [lost.job_id]
    # When the broker cannot be read, nothing is assumed lost.
    published.clear()
    reconcile(sqlite_engine, me, ws, published.append, lambda: None, now=later)
    assert published == []


def test_leftover_pipeline_processes_of_the_job_are_stopped():
    env = {**os.environ, "PIPELINE_RUN_ID": "job-left-behind"}
    leftover = subprocess.Popen(["sleep", "60"], env=env)
    unrelated = subprocess.Popen(["sleep", "60"], env={**env, "PIPELINE_RUN_ID": "other"})
    try:
        assert jobrunner.stop_leftover_run("job-left-behind") == 1
        assert not psutil.pid_exists(leftover.pid) or leftover.poll() is not None
        assert unrelated.poll() is None
    finally:
        for proc in (leftover, unrelated):
            proc.kill()
            proc.wait()
