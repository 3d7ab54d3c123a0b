"""Canary and shadow across real gunicorn workers: every worker applies a canary within
MODEL_REFRESH_SECONDS, routes by the same stable key, returns all traffic when it is aborted,
and shadow scoring neither changes an answer nor fails a request, even with a broken challenger.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select

from core import canary, registry
from core.prediction_log.shadow import prediction_shadow
from core.specs import HOUSING
from tests import procs
from tests.api.conftest import ADMIN, Gunicorn, example
from tests.api.versions_support import (
    HOUSING_REJECTED_CONSTANT,
    PinnedRegistry,
    copy_pinned_registry,
)
from tests.conftest import TrainedRegistry

ROW = example("housing")
# gunicorn_factory's MODEL_REFRESH_SECONDS is 1; a loaded 2-core machine gets generous slack.
APPLY_DEADLINE = 30.0


@pytest.fixture
def pins(pinned_registry: PinnedRegistry, tmp_path_factory) -> PinnedRegistry:
    return copy_pinned_registry(pinned_registry, tmp_path_factory.mktemp("canary-gunicorn"))


@pytest.fixture
def server(
    pins: PinnedRegistry, trained_registry: TrainedRegistry, gunicorn_factory
) -> Iterator[Gunicorn]:
    server = gunicorn_factory(pins.env, SHADOW_SHARE="1")
    with procs.environ(
        {k: pins.env[k] for k in ("STATE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    ):
        registry.configure(pins.tracking_uri)
        yield server
    registry.configure(trained_registry.tracking_uri)


def ask(server: Gunicorn, request_id: str, **headers: str) -> dict[str, Any]:
    response = server.post(
        "/predict/housing",
        json={"instances": [ROW]},
        headers={"X-Request-ID": request_id, **headers},
    )
    assert response.status_code == 200, response.text
    return response.json()


def to_challenger(body: dict[str, Any]) -> bool:
    answered = body["predictions"][0] == HOUSING_REJECTED_CONSTANT
    assert answered == (body["model"].get("alias") == "challenger"), body
    return answered


def by_worker(server: Gunicorn, deadline: float, key: str, wanted: Any) -> dict[int, Any]:
    """Poll /health until every worker reports housing's `key` (canary, challenger) as wanted;
    pid -> what it reported last."""
    seen: dict[int, Any] = {}

    def every_worker() -> bool:
        checks = server.get("/health").json()["checks"]
        seen[checks["process"]["pid"]] = checks["models"]["housing"][key]
        workers = server.worker_pids()
        return workers <= seen.keys() and all(seen[pid] == wanted for pid in workers)

    procs.wait_until(every_worker, deadline, f"every worker with {key} {wanted}", 0.05)
    return seen


def test_every_worker_applies_the_canary_and_its_abort(server: Gunicorn, pins: PinnedRegistry):
    response = requests.put(
        server.base_url + "/models/housing/canary", json={"share": 0.3}, headers=ADMIN, timeout=30
    )
    assert response.status_code == 200, response.text
    wanted = {"share": 0.3, "version": pins.versions["housing"]["rejected"]}
    applied = by_worker(server, APPLY_DEADLINE, "canary", wanted)
    assert set(applied) == server.worker_pids()
    n, hits = 400, 0
    for i in range(n):
        rid = f"share-{i}"
        routed = to_challenger(ask(server, rid))
        assert routed == (canary.bucket("housing", rid) < 0.3), rid
        hits += routed
    assert abs(hits - n * 0.3) <= 5 * math.sqrt(n * 0.3 * 0.7), hits
    # Sticky: one client key, many requests, both workers: always the same side.
    for key in ("alice", "bob", "carol", "dave"):
        sides = {
            to_challenger(ask(server, f"{key}-{i}", **{"X-Client-Key": key})) for i in range(12)
        }
        assert sides == {canary.bucket("housing", key) < 0.3}, key

    response = requests.delete(
        server.base_url + "/models/housing/canary", headers=ADMIN, timeout=30
    )
    assert response.status_code == 200, response.text
    by_worker(server, APPLY_DEADLINE, "canary", None)
    assert not any(to_challenger(ask(server, f"after-{i}")) for i in range(60))
    assert registry.model_state(HOUSING.registered_name)[1].get(canary.TAG_CANARY) is None


def _shadow_request_ids(server: Gunicorn) -> list[str]:
    engine = create_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(prediction_shadow.c.request_id)).scalars())
    finally:
        engine.dispose()


def _shadow_count(server: Gunicorn) -> int:
    engine = create_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(prediction_shadow)).scalar_one()
    finally:
        engine.dispose()


def test_shadow_changes_no_answer_and_survives_a_broken_challenger(
    server: Gunicorn, pins: PinnedRegistry
):
    bodies = [ask(server, f"s-{i}") for i in range(40)]
    answers = {body["predictions"][0] for body in bodies}
    assert len(answers) == 1 and HOUSING_REJECTED_CONSTANT not in answers  # the champion's
    procs.wait_until(lambda: _shadow_count(server) >= 40, APPLY_DEADLINE, "40 shadow rows")
    # The challenger breaks (a version that fails the load-time check takes the alias).
    MlflowClient().set_registered_model_alias(
        HOUSING.registered_name, "challenger", pins.versions["housing"]["load_check"]
    )
    broken = pins.versions["housing"]["load_check"]
    # Requests sent once every worker has read the move cannot be scored by the old challenger.
    by_worker(server, APPLY_DEADLINE, "challenger", broken)
    dropped = _dropped(server, broken)
    for i in range(60):
        assert ask(server, f"broken-{i}")["predictions"][0] in answers
    procs.wait_until(
        lambda: _dropped(server, broken) >= dropped + 60, APPLY_DEADLINE, "60 more rows dropped"
    )
    assert not [rid for rid in _shadow_request_ids(server) if rid.startswith("broken-")]


def _dropped(server: Gunicorn, version: str) -> float:
    """model_shadow_rows_total{outcome="dropped"} of housing for version, summed over workers."""
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "model_shadow_rows_total" and sample.labels == {
                "model": "housing",
                "version": version,
                "outcome": "dropped",
            }:
                return sample.value
    return 0.0
