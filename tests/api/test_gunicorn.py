"""End to end under real gunicorn (2 workers): hot swap, a broken champion, SIGTERM flush."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
import requests
from sklearn.dummy import DummyClassifier
from sqlalchemy import create_engine, text

from core import registry
from core.specs import IRIS
from tests import procs
from tests.api.conftest import ADMIN, Gunicorn, GunicornLauncher, example
from tests.conftest import TrainedRegistry, registry_env

pytestmark = pytest.mark.slow
REFRESH_SECONDS = 1.0  # what gunicorn_factory configures


@pytest.fixture(scope="module")
def module_registry(trained_registry: TrainedRegistry, tmp_path_factory) -> Iterator[dict]:
    """A private copy of the trained registry for this module (aliases move here)."""
    state_dir = tmp_path_factory.mktemp("gunicorn-registry")
    shutil.copy2(trained_registry.state_dir / "mlflow.db", state_dir / "mlflow.db")
    env = registry_env(state_dir)
    with procs.environ(env):
        registry.configure(env["MLFLOW_TRACKING_URI"])
        yield {**os.environ, **env}
    registry.configure(trained_registry.tracking_uri)


@pytest.fixture(scope="module")
def server(module_registry: dict, tmp_path_factory) -> Iterator[Gunicorn]:
    """One gunicorn for the hot-swap and broken-version scenarios."""
    launcher = GunicornLauncher(tmp_path_factory.mktemp("gunicorn"))
    try:
        yield launcher.start(module_registry)
    finally:
        launcher.close()


class Client(threading.Thread):
    """Posts iris predictions in a loop, recording (status, version) of every answer."""

    def __init__(self, server: Gunicorn) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.results: list[tuple[int, str | None]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.post(
                    f"{self.server.base_url}/predict/iris", json=example("iris"), timeout=10
                )
                version = response.json().get("model", {}).get("version")
                self.results.append((response.status_code, version))
            except requests.RequestException as exc:
                self.errors.append(repr(exc))


def _serving(server: Gunicorn, version: str) -> bool:
    return set(server.versions_by_worker("iris", 10).values()) == {version}


def _new_version_of_champion() -> str:
    champion = registry.champion(IRIS.registered_name)
    return str(mlflow.register_model(champion.source, IRIS.registered_name).version)


def test_hot_swap_under_load(server: Gunicorn):
    before = server.versions_by_worker("iris", 10)
    assert len(before) == 2 and len(set(before.values())) == 1
    old = next(iter(before.values()))
    new = _new_version_of_champion()

    client = Client(server)
    client.start()
    try:
        # Traffic must be flowing before the promotion, and keep flowing after convergence.
        procs.wait_until(lambda: len(client.results) >= 20, 10, "client traffic before the swap")
        promoted = server.post("/models/iris/promote", json={"version": new}, headers=ADMIN)
        assert promoted.status_code == 200, promoted.text
        started = time.monotonic()
        procs.wait_until(
            lambda: _serving(server, new), REFRESH_SECONDS + 2, "both workers on the new version"
        )
        converged = time.monotonic() - started
        mark = len(client.results)
        procs.wait_until(
            lambda: len(client.results) >= mark + 20, 10, "client traffic after the swap"
        )
    finally:
        client.stop.set()
        client.join(15)

    assert not client.errors, client.errors[:3]
    statuses = [status for status, _ in client.results]
    assert len(statuses) > 50 and set(statuses) == {200}
    assert {version for _, version in client.results} <= {old, new}
    assert {version for _, version in client.results[mark:]} == {new}
    assert converged <= REFRESH_SECONDS + 2
    metrics = server.get("/metrics").text
    assert 'model_info{algorithm="' in metrics
    info = [
        line
        for line in metrics.splitlines()
        if line.startswith("model_info{") and 'model="iris"' in line
    ]
    assert any(f'version="{new}"' in line and line.endswith(" 1.0") for line in info), info
    assert any(f'version="{old}"' in line and line.endswith(" 0.0") for line in info), info


def _broken_version() -> str:
    """Log and register an iris model, then corrupt its pickle on disk."""
    x = np.tile([[5.1, 3.5, 1.4, 0.2]], (3, 1))
    model = DummyClassifier().fit(x, list(IRIS.classes))
    registry.ensure_store()  # the project's experiment: artifacts under the test's state dir
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    location = mlflow.get_logged_model(info.model_id).artifact_location
    folder = Path(urlparse(location).path)
    pickles = list(folder.rglob("model.pkl"))
    assert pickles, list(folder.rglob("*"))
    for path in pickles:
        path.write_bytes(b"this is not a pickle")
    return str(mlflow.register_model(info.model_uri, IRIS.registered_name).version)


def _reload_failures(server: Gunicorn) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith('model_reloads_total{model="iris",outcome="failure"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_broken_champion_keeps_the_old_version_serving(server: Gunicorn):
    serving = server.versions_by_worker("iris", 10)
    old = next(iter(serving.values()))
    failures_before = _reload_failures(server)
    broken = _broken_version()
    registry.promote(IRIS.registered_name, broken)
    try:
        # Both workers try the broken version (and back off); neither swaps, neither goes unready.
        procs.wait_until(
            lambda: _reload_failures(server) >= failures_before + 2,
            REFRESH_SECONDS + 5,
            "a load failure counted in each worker",
        )
        deadline = time.monotonic() + REFRESH_SECONDS + 2
        while time.monotonic() < deadline:
            response = server.post("/predict/iris", json=example("iris"))
            assert response.status_code == 200
            assert response.json()["model"]["version"] == old
            assert server.get("/health/ready").status_code == 200
        health = server.versions_by_worker("iris", 10)
        assert set(health.values()) == {old}
        last_error = server.get("/health").json()["checks"]["models"]["iris"]["last_error"]
        assert f"version {broken}" in last_error
    finally:
        registry.promote(IRIS.registered_name, old)  # later tests need a loadable champion


def test_sigterm_flushes_the_prediction_log(module_registry: dict, gunicorn_factory):
    # The periodic flush is far away: only the shutdown flush can write these rows.
    server = gunicorn_factory(
        module_registry, PREDICTION_LOG_FLUSH_SECONDS="600", PREDICTION_LOG_FLUSH_ROWS="1000000"
    )
    expected = 0
    for i in range(20):
        response = server.post(
            "/predict/iris", json=example("iris"), headers={"X-Request-ID": f"term-{i}"}
        )
        assert response.status_code == 200
        expected += 1
    batch = {"instances": [example("housing")] * 25}
    assert server.post("/predict/housing", json=batch).status_code == 200
    expected += 25

    engine = create_engine(server.env["DATABASE_URL"])
    assert procs.stop(server.proc, signal.SIGTERM, timeout=30) == 0
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM prediction_log")).scalar()
        ids = {r[0] for r in conn.execute(text("SELECT request_id FROM prediction_log"))}
    assert count == expected
    assert {f"term-{i}" for i in range(20)} <= ids
