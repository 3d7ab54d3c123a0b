"""POST /retrain, GET /jobs and /jobs/<id> through the real app, against a private Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from core import broker, jobs
from core.settings import PROJECT_ROOT
from core.specs import HOUSING
from tests.api.conftest import TEST_CONFIG
from tests.workers.conftest import RedisServer

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-api"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def make_app(trained_registry, redis_server, tmp_path, monkeypatch):
    """Build apps (the same DB each time) pointed at the session registry and private Redis."""
    from app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    built: list[Flask] = []

    def build() -> Flask:
        app = create_app(TEST_CONFIG)
        built.append(app)
        return app

    yield build
    from app.runtime import get_runtime

    for app in built:
        get_runtime(app).stop()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def _retrain(client, body: dict, headers: dict | None = ADMIN):
    return client.post("/retrain", json=body, headers=headers or {})


def test_admin_token_is_required(client):
    assert _retrain(client, {"model": "iris"}, headers=None).status_code == 401
    wrong = _retrain(client, {"model": "iris"}, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["message"] == "Invalid bearer token."
    assert client.get("/jobs").get_json() == {"jobs": []}  # nothing was recorded


@pytest.mark.parametrize(
    "body",
    [{"model": "wine"}, {"model": "iris", "force": "yes"}, {"model": "iris", "x": 1}, {}],
)
def test_invalid_bodies_are_422(client, body):
    response = _retrain(client, body)
    assert response.status_code == 422
    assert response.get_json()["errors"]


def test_unknown_job_is_404_in_the_error_shape(client):
    response = client.get("/jobs/does-not-exist")
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == 404 and "does-not-exist" in body["message"]


def test_post_queues_a_durable_job_and_its_message(make_app, redis_server):
    client = make_app().test_client()
    response = _retrain(client, {"model": "housing", "force": True, "reason": "test"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["state"] == "queued" and body["model"] == "housing" and body["force"] is True
    assert response.headers["Location"] == f"/jobs/{body['job_id']}"
    polled = client.get(response.headers["Location"]).get_json()
    assert polled["job_id"] == body["job_id"] and polled["state"] == "queued"
    assert body["job_id"] in broker.pending_task_ids(redis_server.url)
    # A new app instance over the same database (an API restart) still knows the job.
    restarted = make_app().test_client()
    assert restarted.get(f"/jobs/{body['job_id']}").get_json()["state"] == "queued"
    listed = restarted.get("/jobs?limit=5").get_json()["jobs"]
    assert [j["job_id"] for j in listed] == [body["job_id"]]
    assert restarted.get("/jobs?limit=0").status_code == 422


def test_concurrent_posts_have_exactly_one_winner(make_app):
    app = make_app()
    barrier = threading.Barrier(6)
    responses = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        responses.append(_retrain(client, {"model": "iris"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 409, 409, 409, 409, 409]
    winner = next(r for r in responses if r.status_code == 202).get_json()["job_id"]
    for r in responses:
        if r.status_code == 409:
            body = r.get_json()
            assert body["errors"]["job_id"] == winner and winner in body["message"]
            assert r.headers["Location"] == f"/jobs/{winner}"
    # "all" needs iris too, so it conflicts with the same job; the response names it.
    conflict = _retrain(app.test_client(), {"model": "all"})
    assert conflict.status_code == 409 and conflict.get_json()["errors"]["job_id"] == winner


def test_redis_down_answers_503_fast_and_leaves_no_job(make_app, redis_server):
    from app.runtime import get_runtime

    app = make_app()
    get_runtime(app).start()
    client = app.test_client()
    assert _retrain(client, {"model": "iris"}).status_code == 202  # connections now pooled
    redis_server.stop()
    try:
        started = time.monotonic()
        response = _retrain(client, {"model": "housing"})
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.get_json()
        assert elapsed < 10, f"503 took {elapsed:.2f}s: a publish that waits unbounded"
        assert "Redis" in response.get_json()["message"]
        engine = get_runtime(app).engine
        assert [j.model for j in jobs.active(engine)] == ["iris"]  # no orphaned record
        # Predictions never touch Redis: they keep answering.
        wait_ready(app)
        prediction = client.post("/predict/housing", json=HOUSING.example_row())
        assert prediction.status_code == 200
        health = client.get("/health").get_json()
        assert health["status"] == "degraded"
        assert health["checks"]["broker"]["status"] == "error"
    finally:
        redis_server.start()
    # The failed POST released its lock with its record: housing can be queued now.
    assert _retrain(client, {"model": "housing"}).status_code == 202
    assert client.get("/health").get_json()["checks"]["broker"]["status"] == "ok"


def wait_ready(app: Flask, timeout: float = 60) -> None:
    """Wait until the app's model cache serves every model."""
    from app.runtime import get_runtime

    deadline = time.monotonic() + timeout
    while not get_runtime(app).cache.ready():
        assert time.monotonic() < deadline, get_runtime(app).cache.status()
        time.sleep(0.1)


def test_importing_the_app_never_imports_training_or_worker_code(trained_registry, tmp_path):
    script = """
import sys, json
from app import create_app
app = create_app({"API_ADMIN_TOKEN": "t", "START_SERVICES_ON_FIRST_REQUEST": False})
client = app.test_client()
client.get("/jobs")
retrain = client.post("/retrain", json={"model": "iris"}, headers={"Authorization": "Bearer t"})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "workers"))
print(json.dumps({"retrain": retrain.status_code, "loaded": loaded}))
"""
    env = {**trained_registry.env, "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens: the POST answers 503
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["retrain"] == 503, result  # the whole publish path ran, Redis being down
    assert result["loaded"] == [], result["loaded"]
