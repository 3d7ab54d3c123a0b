"""Fixtures for the prediction API tests: in-process apps on the trained registry, gunicorn."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from app import create_app
from app.runtime import get_runtime
from tests import procs
from tests.conftest import TrainedRegistry

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


# In-process apps: a known admin token, fast refresh and flushes, the runtime started by the test.
TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "API_ADMIN_TOKEN": ADMIN_TOKEN,
    "MODEL_REFRESH_SECONDS": 1.0,
    "PREDICTION_LOG_FLUSH_SECONDS": 0.2,
    "START_SERVICES_ON_FIRST_REQUEST": False,
}


def config_with(**overrides: Any) -> dict[str, Any]:
    """TEST_CONFIG with some settings replaced (create_app applies it over the environment)."""
    return {**TEST_CONFIG, **overrides}


def start_app(**overrides: Any) -> Flask:
    """create_app(TEST_CONFIG + overrides) with its runtime started and every model warmed."""
    app = create_app(config_with(**overrides))
    runtime = get_runtime(app)
    runtime.start()
    assert runtime.cache.wait_ready(60), runtime.cache.status()
    return app


@pytest.fixture(scope="module")
def api_app(trained_registry: TrainedRegistry, tmp_path_factory) -> Iterator[Flask]:
    """One warmed app per module on the session registry (tests here never move aliases)."""
    db = tmp_path_factory.mktemp("api") / "app.db"
    app = start_app(
        MLFLOW_TRACKING_URI=trained_registry.tracking_uri, DATABASE_URL=f"sqlite:///{db}"
    )
    yield app
    get_runtime(app).stop()


@pytest.fixture
def client(api_app: Flask):
    """A test client of the module's app."""
    return api_app.test_client()


@pytest.fixture
def app_on_copy(registry_copy: TrainedRegistry, tmp_path: Path) -> Iterator[Flask]:
    """A warmed app on a private registry copy (for tests that promote or roll back)."""
    app = start_app(
        MLFLOW_TRACKING_URI=registry_copy.tracking_uri,
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
    )
    yield app
    get_runtime(app).stop()


@dataclass
class Gunicorn:
    """A running `gunicorn -c deploy/gunicorn.conf.py` with 2 workers."""

    proc: Any
    base_url: str
    env: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET base_url + path."""
        return requests.get(self.base_url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST base_url + path."""
        return requests.post(self.base_url + path, timeout=10, **kwargs)

    def worker_pids(self) -> set[int]:
        """The master's child processes (the workers)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def versions_by_worker(self, model: str, deadline_s: float) -> dict[int, str]:
        """Poll /health until every worker has answered once; pid -> served version."""
        seen: dict[int, str] = {}
        workers = self.worker_pids()

        def all_seen() -> bool:
            health = self.get("/health").json()
            seen[health["checks"]["process"]["pid"]] = health["checks"]["models"][model]["version"]
            return workers <= seen.keys()

        procs.wait_until(all_seen, deadline_s, "every worker to answer /health", interval=0.02)
        return seen


class GunicornLauncher:
    """Starts `gunicorn -c deploy/gunicorn.conf.py` servers (2 workers); close() stops them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Gunicorn] = []

    def start(self, base_env: dict[str, str], wait_ready: bool = True, **extra: str) -> Gunicorn:
        """Start one server on a free port; wait until both workers are ready (or only live)."""
        port = procs.free_port()
        env = {
            **base_env,
            "API_PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "MODEL_REFRESH_SECONDS": "1",
            "API_ADMIN_TOKEN": ADMIN_TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp_path / f"prometheus-{port}"),
            "DATABASE_URL": f"sqlite:///{self.tmp_path / f'app-{port}.db'}",
            "PREDICTION_LOG_FLUSH_SECONDS": "0.5",
            "LOG_LEVEL": "INFO",
            **extra,
        }
        proc = procs.start(
            [GUNICORN, "-c", "deploy/gunicorn.conf.py", "app:create_app()"],
            env,
            self.tmp_path / f"gunicorn-{port}.log",
        )
        server = Gunicorn(proc, f"http://127.0.0.1:{port}", env)
        self.started.append(server)
        procs.wait_http(f"{server.base_url}/health/live", procs.START_SECONDS, proc)
        if not wait_ready:  # e.g. a server started without a loadable model
            procs.wait_until(
                lambda: len(server.worker_pids()) == 2, procs.START_SECONDS, "two workers"
            )
            return server
        ready: set[int] = set()

        def every_worker_ready() -> bool:
            # /health is answered by whichever worker accepts; collect until both said "ok".
            response = server.get("/health")
            checks = response.json()["checks"]
            if all(m["status"] == "ok" for m in checks["models"].values()):
                ready.add(checks["process"]["pid"])
            workers = server.worker_pids()
            return len(workers) == 2 and workers <= ready

        try:
            procs.wait_until(
                every_worker_ready, procs.START_SECONDS, "both workers ready", interval=0.05
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{procs.tail(proc)}") from None
        return server

    def close(self) -> None:
        """SIGTERM every server started (gracefully, then SIGKILL after 30 s)."""
        for server in self.started:
            procs.stop(server.proc, signal.SIGTERM, timeout=30)


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start real gunicorn servers with the given environment; always stopped afterwards."""
    launcher = GunicornLauncher(tmp_path)
    try:
        yield launcher.start
    finally:
        launcher.close()


def example(name: str) -> dict[str, float]:
    """A valid record of model name."""
    from core.specs import MODEL_SPECS

    return MODEL_SPECS[name].example_row()


def pg_admin_url() -> str:
    """Where the test PostgreSQL server is (TEST_POSTGRES_URL overrides)."""
    return os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
