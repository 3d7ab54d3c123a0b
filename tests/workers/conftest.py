"""Fixtures for the retrain tests: private Redis servers, Celery worker processes, databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from core import jobs
from core.db import make_engine
from core.settings import PROJECT_ROOT
from tests.conftest import IN_CI, TrainedRegistry, registry_env
from tests.procs import START_SECONDS, free_port
from tests.procs import wait_until as wait_for

CELERY = str(Path(sys.executable).with_name("celery"))
PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def _kill_group(proc: subprocess.Popen) -> None:
    # Each process runs in its own session: the group also holds whatever it left behind
    # (e.g. a `dvc repro` orphaned by a SIGKILLed worker).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


class RedisServer:
    """A private redis-server on a free port, stoppable and restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.started: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """redis:// URL of DB 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port; returns once it answers PING."""
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started.append(self.proc)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(pong, 60, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Kill the server (it keeps nothing on disk)."""
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc = None

    def close(self) -> None:
        """Kill every server this object started."""
        for proc in self.started:
            _kill_group(proc)


class WorkerProcess:
    """A real `celery worker` subprocess (prefork, one pool process) with its own log file."""

    def __init__(self, env: dict[str, str], log_dir: Path, nodename: str = "retrain@%h") -> None:
        self.env = env
        self.log_dir = log_dir
        self.nodename = nodename
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.started: list[subprocess.Popen] = []

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start and wait until the worker logs that it is ready."""
        self.log_path = self.log_dir / f"worker-{len(self.started)}.log"
        cmd = [CELERY, "-A", "workers.make_celery", "worker", "--pool=prefork"]
        cmd += ["--concurrency=1", "-n", self.nodename, "--loglevel=INFO"]
        cmd += ["--without-gossip", "--without-mingle"]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(self.proc)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            return " ready." in self.log_path.read_text(errors="replace")

        wait_for(ready, timeout, "the celery worker to be ready", interval=0.2)

    def kill_main(self) -> None:
        """SIGKILL the worker's main process only, as the OOM killer or a crash would."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the current log, for failure messages."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop every worker this object started, then kill whatever they left running."""
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()  # warm shutdown: the worker removes its metrics folder
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
            _kill_group(proc)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty application database (SQLite file) with the job tables."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    jobs.ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A throw-away PostgreSQL database with the job tables (skipped locally without a server)."""
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"jobs_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    jobs.ensure_schema(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def job_engine(request: pytest.FixtureRequest) -> Engine:
    """The job database on each supported backend."""
    return request.getfixturevalue(f"{request.param}_engine")


def private_state(trained: TrainedRegistry, root: Path) -> dict[str, str]:
    """A private copy of the trained registry plus an empty app database; returns its env."""
    state_dir = root / "state"
    state_dir.mkdir(parents=True)
    shutil.copy2(trained.state_dir / "mlflow.db", state_dir / "mlflow.db")
    return registry_env(state_dir)
