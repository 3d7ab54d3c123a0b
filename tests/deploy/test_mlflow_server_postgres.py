"""The docker-compose topology, natively: `mlflow server` on PostgreSQL with proxied artifacts.

The real pipeline (a subprocess, so this process's MLflow URI is untouched) registers both models
through the server, the real API (gunicorn) loads them through it, and the prediction log lands
in PostgreSQL. The server gets the same --allowed-hosts as the compose mlflow service: other
containers reach it as http://mlflow:5000, a Host header MLflow's default allow-list (localhost
and private IPs) refuses with 403.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests
import yaml

from core.settings import PROJECT_ROOT
from core.specs import HOUSING, IRIS
from pipeline import workspace
from tests import procs
from tests.conftest import TEST_PARAMS, TrainedRegistry

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_SQLALCHEMY = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def compose_allowed_hosts() -> str:
    """The compose mlflow service's --allowed-hosts value: the test runs the same server."""
    command = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"][
        "mlflow"
    ]["command"]
    return command[command.index("--allowed-hosts") + 1]


ALLOWED_HOSTS = compose_allowed_hosts()
IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# pipeline.cli train prints "<model> candidate v<version> <promoted|not promoted> <reason>".
VERDICT = re.compile(r"^(\w+)\s+candidate v(\S+)\s+(promoted|not promoted)\s", re.MULTILINE)
MODELS = {spec.name: spec.registered_name for spec in (HOUSING, IRIS)}


@dataclass
class Stack:
    """Where everything of the module lives."""

    root: Path
    mlflow_db: str
    app_db: str
    mlflow_url: str
    mlflow_proc: subprocess.Popen
    env: dict[str, str]


def _admin_connection():
    try:
        conn = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    conn.autocommit = True
    return conn


def _pg_url(db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{db}"


@pytest.fixture(scope="module")
def stack(trained_registry: TrainedRegistry, tmp_path_factory) -> Iterator[Stack]:
    """Two throwaway databases and a running `mlflow server` with proxied artifacts."""
    admin = _admin_connection()
    suffix = uuid.uuid4().hex[:8]
    mlflow_db, app_db = f"mlflow_{suffix}", f"app_{suffix}"
    root = tmp_path_factory.mktemp("mlflow-server")
    created: list[str] = []
    proc = None
    try:
        for name in (mlflow_db, app_db):
            admin.cursor().execute(f"CREATE DATABASE {name}")
            created.append(name)
        port = procs.free_port()
        env = {
            **trained_registry.env,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{BIN}:{trained_registry.env.get('PATH', '')}",
        }
        # mlflow.set_registry_uri() exported the session's SQLite registry; like compose, the
        # children here get MLFLOW_TRACKING_URI only (the server) and nothing else to fall to.
        env.pop("MLFLOW_REGISTRY_URI", None)
        proc = procs.start(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"{PG_SQLALCHEMY}/{mlflow_db}",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--serve-artifacts",
                "--allowed-hosts",
                ALLOWED_HOSTS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env,
            root / "mlflow.log",
        )
        url = f"http://127.0.0.1:{port}"
        procs.wait_http(f"{url}/health", procs.START_SECONDS, proc)
        yield Stack(root, mlflow_db, app_db, url, proc, env)
    finally:
        if proc is not None:
            procs.stop(proc)
        for name in created:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="module")
def trained(stack: Stack) -> subprocess.CompletedProcess:
    """`python -m pipeline.cli train` on a fresh workspace, registering through the server."""
    ws = workspace.create(stack.root / "ws", params_file=TEST_PARAMS)
    env = {
        **stack.env,
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "STATE_DIR": str(stack.root / "state"),
        "DATABASE_URL": f"sqlite:///{stack.root / 'state' / 'app.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "train", "--workspace", str(ws)],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def api(stack: Stack, trained: subprocess.CompletedProcess) -> Iterator[str]:
    """The real API under gunicorn (1 worker), loading models through the server."""
    assert trained.returncode == 0, trained.stdout + trained.stderr
    port = procs.free_port()
    env = {
        **stack.env,
        "API_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(stack.root / "prom"),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "DATABASE_URL": f"{PG_SQLALCHEMY}/{stack.app_db}",
        "STATE_DIR": str(stack.root / "apistate"),
    }
    proc = procs.start(
        [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "app:create_app()"],
        env,
        stack.root / "api.log",
        cwd=PROJECT_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(f"{url}/health/ready", procs.START_SECONDS, proc)
        yield url
    finally:
        procs.stop(proc)


def _champion(stack: Stack, registered_name: str, host: str | None = None) -> requests.Response:
    return requests.get(
        f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": registered_name, "alias": "champion"},
        headers={"Host": host} if host else None,
        timeout=10,
    )


def test_pipeline_registers_both_models_through_the_server(stack, trained):
    out = trained.stdout + trained.stderr
    assert trained.returncode == 0, out
    verdicts = {m[1]: (m[2], m[3]) for m in VERDICT.finditer(trained.stdout)}
    assert verdicts == {name: ("1", "promoted") for name in MODELS}, out

    for registered_name in MODELS.values():
        response = _champion(stack, registered_name)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"]["version"] == "1"

    experiment = requests.get(
        f"{stack.mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "prediction-service"},
        timeout=10,
    ).json()["experiment"]
    assert experiment["artifact_location"].startswith("mlflow-artifacts:"), experiment
    # Proxied: the bytes sit in the server's --artifacts-destination, nothing on the client side.
    assert len(list((stack.root / "artifacts").rglob("MLmodel"))) >= 2
    assert not (stack.root / "state" / "mlartifacts").exists()
    assert not list((stack.root / "ws").rglob("mlartifacts"))


def test_server_accepts_the_compose_host_header_and_refuses_others(stack, trained):
    assert _champion(stack, IRIS.registered_name, host="mlflow:5000").status_code == 200
    refused = _champion(stack, IRIS.registered_name, host="evil.example:5000")
    assert refused.status_code == 403 and "Invalid Host header" in refused.text


def test_api_serves_the_champions_and_logs_to_postgres(stack, api):
    response = requests.post(f"{api}/predict/iris", json=IRIS_ROW, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] == "setosa"
    assert body["model"]["version"] == "1"

    info = requests.get(f"{api}/models/info", timeout=10).json()
    served = {m["name"]: (m["registered_name"], m["version"], m["run_id"]) for m in info["models"]}
    # The run ids are the server's champions (the session's SQLite registry has v1s too).
    champions = {
        name: (registered, "1", _champion(stack, registered).json()["model_version"]["run_id"])
        for name, registered in MODELS.items()
    }
    assert served == champions

    def logged_rows() -> int:
        conn = psycopg2.connect(_pg_url(stack.app_db), connect_timeout=5)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM prediction_log WHERE model = 'iris'")
            return cur.fetchone()[0]

    assert procs.wait_until(logged_rows, 20, "the prediction log to reach PostgreSQL") >= 1
