"""End to end: the app, a real Celery worker process, Redis, MLflow and DVC in a temp workspace.

One stack for the module (one worker, reused); tests run in file order and share the registry
copy, so each states what it expects of the champion it starts from.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask import Flask
from flask.testing import FlaskClient

from core import jobs, registry
from core.specs import ALIAS_PREVIOUS, HOUSING, IRIS
from tests.api.conftest import TEST_CONFIG
from tests.workers.conftest import RedisServer, WorkerProcess, free_port, private_state, wait_for

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer test-admin-token"}
STRONGER = {"hist_gradient_boosting": {"max_iter": 120, "max_leaf_nodes": 63}}


@dataclass
class Stack:
    """What the tests drive and observe."""

    app: Flask
    client: FlaskClient
    worker: WorkerProcess
    redis: RedisServer
    workspace: Path
    metrics_port: int


def set_housing_params(workspace: Path, candidates: dict, validate: dict | None = None) -> None:
    """Change what the next housing retrain trains (the worker reads params at run time)."""
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"]["housing"]["candidates"] = candidates
    params["validate"]["housing"].update(validate or {})
    path.write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def stack(trained_registry, tmp_path_factory) -> Iterator[Stack]:
    from app import create_app
    from app.runtime import get_runtime

    root = tmp_path_factory.mktemp("retrain-e2e")
    env = private_state(trained_registry, root)
    workspace = root / "workspace"
    shutil.copytree(trained_registry.workspace, workspace, symlinks=True)
    set_housing_params(workspace, STRONGER)  # beats the session champion: a promotion
    redis = RedisServer(root / "redis")
    worker = WorkerProcess({}, root)
    try:
        redis.start()
        env["REDIS_URL"] = redis.url
        metrics_port = free_port()
        worker.env = {
            **trained_registry.env,
            **env,
            "PIPELINE_WORKSPACE": str(workspace),
            "WORKER_METRICS_PORT": str(metrics_port),
            "WORKER_PROMETHEUS_DIR": str(root / "worker-metrics"),
            # Fast orphan detection, so the crash test runs in seconds.
            "JOB_HEARTBEAT_SECONDS": "1",
            "JOB_STALE_SECONDS": "8",
            "JOB_SWEEP_SECONDS": "2",
            "JOB_LOST_AFTER_SECONDS": "3",
        }
        worker.start()
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            app = create_app(TEST_CONFIG)
            get_runtime(app).start()
            try:
                yield Stack(app, app.test_client(), worker, redis, workspace, metrics_port)
            finally:
                get_runtime(app).stop()
    finally:
        worker.close()
        redis.close()
        registry.configure(trained_registry.tracking_uri)


def submit(stack: Stack, body: dict) -> str:
    """POST /retrain and return the job id (asserting 202)."""
    response = stack.client.post("/retrain", json=body, headers=ADMIN)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def finished(stack: Stack, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll GET /jobs/<id> until the job is succeeded or failed."""

    def done() -> dict[str, Any] | None:
        body = stack.client.get(f"/jobs/{job_id}").get_json()
        return body if body["state"] in jobs.FINAL_STATES else None

    try:
        return wait_for(done, timeout, f"job {job_id} to finish", interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{stack.worker.log_tail()}") from None


def served_version(stack: Stack, model: str) -> str | None:
    """The version /models/info says this app serves."""
    for entry in stack.client.get("/models/info").get_json()["models"]:
        if entry["name"] == model:
            return entry["version"]
    return None


def test_retrain_promotes_and_the_api_serves_the_new_version(stack):
    name = HOUSING.registered_name
    before = registry.champion(name).version
    job = finished(stack, submit(stack, {"model": "housing"}))
    assert job["state"] == "succeeded", job
    result = job["result"]["housing"]
    assert result["promoted"] is True, result["reason"]
    assert result["metrics"]["rmse"] < result["champion_metrics"]["rmse"]
    new = result["candidate_version"]
    assert new != before and registry.champion(name).version == new
    assert job["started_at"] >= job["submitted_at"] and job["finished_at"] >= job["started_at"]
    # The app's model cache picks the new champion up without a restart.
    seconds = stack.app.config["MODEL_REFRESH_SECONDS"] + 2
    started = time.monotonic()
    wait_for(lambda: served_version(stack, "housing") == new, seconds + 8, "the new version")
    print(f"\n[retrain e2e] API served v{new} {time.monotonic() - started:.1f}s after success")
    prediction = stack.client.post("/predict/housing", json=HOUSING.example_row()).get_json()
    assert prediction["model"]["version"] == new


def test_no_change_retrain_of_both_models_is_up_to_date_quickly(stack):
    started = time.monotonic()
    job = finished(stack, submit(stack, {"model": "all"}), timeout=60)
    elapsed = time.monotonic() - started
    assert job["state"] == "succeeded", job
    for model in ("housing", "iris"):
        assert job["result"][model]["up_to_date"] is True
        assert job["result"][model]["reason"].startswith("up to date")
    # How fast: bench/bench_retrain.py.
    print(f"\n[retrain e2e] no-change retrain of both models: {elapsed:.1f}s")


def test_weak_candidate_succeeds_without_promotion(stack):
    name = HOUSING.registered_name
    champion = registry.champion(name).version
    set_housing_params(stack.workspace, {"ridge": {"alpha": 1.0}}, {"max_rmse": 1.0, "min_r2": 0.5})
    job = finished(stack, submit(stack, {"model": "housing"}))
    assert job["state"] == "succeeded", job
    result = job["result"]["housing"]
    assert result["promoted"] is False
    assert f"does not beat champion v{champion}" in result["reason"]
    assert registry.champion(name).version == champion
    assert served_version(stack, "housing") == champion


def test_worker_exposes_retrain_metrics(stack):
    text = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("retrain_") and " " in line:
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    assert samples['retrain_jobs_total{model="housing",outcome="promoted"}'] >= 1
    assert samples['retrain_jobs_total{model="housing",outcome="rejected"}'] >= 1
    assert samples['retrain_jobs_total{model="iris",outcome="up_to_date"}'] >= 1
    assert samples['retrain_duration_seconds_count{model="housing"}'] >= 3


def test_worker_killed_mid_retrain_is_recovered(stack):
    name = HOUSING.registered_name
    # The ridge params of the previous test: a train stage of a few seconds, cheap to redo.
    job_id = submit(stack, {"model": "housing", "force": True})

    def training() -> bool:
        stage = stack.client.get(f"/jobs/{job_id}").get_json()["stage"] or ""
        return stage.startswith("train@")

    wait_for(training, 60, "the job to reach the train stage", interval=0.05)
    stack.worker.kill_main()  # its pool process dies with it (prefork sets PDEATHSIG)
    assert stack.client.get(f"/jobs/{job_id}").get_json()["state"] == "running"
    stack.worker.start()  # same node name: it finds the job its predecessor left running
    job = finished(stack, job_id, timeout=240)
    # Requeued once by the restarted worker, then run to the end: the second attempt succeeds.
    assert job["state"] == "succeeded" and job["attempts"] == 2, job
    assert job["error"] is None, job
    assert job["result"]["housing"]["candidate_version"], job
    # The champion alias is whole: it names a registered version, and previous is another one.
    champion = registry.champion(name)
    assert champion is not None and registry.get_version(name, champion.version)
    previous = registry.get_alias(name, ALIAS_PREVIOUS)
    assert previous is None or previous.version != champion.version


def test_redis_outage_fails_fast_then_retraining_works_again(stack):
    known = {j["job_id"] for j in stack.client.get("/jobs?limit=200").get_json()["jobs"]}
    stack.redis.stop()
    try:
        started = time.monotonic()
        response = stack.client.post("/retrain", json={"model": "iris"}, headers=ADMIN)
        elapsed = time.monotonic() - started
        # Bounded socket timeouts and one publish retry: refused in ~0.1 s here; the ceiling
        # tells a bounded wait from a hung one on a loaded machine.
        assert response.status_code == 503 and elapsed < 10, (response.status_code, elapsed)
        listed = stack.client.get("/jobs?limit=200").get_json()["jobs"]
        assert {j["job_id"] for j in listed} == known  # no orphaned record
        prediction = stack.client.post("/predict/iris", json=IRIS.example_row())
        assert prediction.status_code == 200
        assert stack.client.get("/health").get_json()["status"] == "degraded"
    finally:
        stack.redis.start()
    # The worker reconnects on its own; a new retrain is queued and runs.
    job = finished(stack, submit(stack, {"model": "iris"}), timeout=90)
    assert job["state"] == "succeeded", job


def test_job_records_survive_an_api_restart(stack):
    from app import create_app

    before = stack.client.get("/jobs?limit=200").get_json()["jobs"]
    assert len(before) >= 5
    fresh = create_app(TEST_CONFIG).test_client()  # not started: reads only the database
    after = fresh.get("/jobs?limit=200").get_json()["jobs"]
    assert [(j["job_id"], j["state"]) for j in after] == [(j["job_id"], j["state"]) for j in before]
    assert fresh.get(f"/jobs/{before[-1]['job_id']}").get_json() == before[-1]
