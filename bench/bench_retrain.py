"""Retrain benchmark: the issue's three targets, measured on a private stack.

Starts its own redis-server, a Celery worker (prefork, one pool process) and the API under
gunicorn (2 workers), over a fresh registry and a workspace with the full params.yaml profile,
then prints:
  - full forced retrain of both models, submitted -> succeeded (target <= 180 s),
  - no-change retrain of both models, submitted -> succeeded (target <= 5 s),
  - promotion -> every API worker serving the new version (target <= MODEL_REFRESH_SECONDS + 2).

    .venv/bin/python bench/bench_retrain.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import settings
from core.settings import PROJECT_ROOT
from pipeline import workspace

TOKEN = "bench-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
REFRESH_SECONDS = 5.0
API_WORKERS = 2
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll check() until truthy; raise at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start cmd in its own session (so it can be stopped with everything it started)."""
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    """Stop a started process group (SIGTERM, then SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Bench:
    """The stack under measurement."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.api = f"http://127.0.0.1:{free_port()}"
        redis_port = free_port()
        state = root / "state"
        self.env = {
            **os.environ,
            **settings.QUIET_ENV,
            "PYTHONPATH": str(PROJECT_ROOT),
            "STATE_DIR": str(state),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "DATABASE_URL": f"sqlite:///{state / 'app.db'}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "PIPELINE_WORKSPACE": str(workspace.create(root / "workspace")),
            "WORKER_METRICS_PORT": str(free_port()),
            "API_PORT": self.api.rsplit(":", 1)[1],
            "API_ADMIN_TOKEN": TOKEN,
            "WEB_CONCURRENCY": str(API_WORKERS),
            "MODEL_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prometheus"),
            "LOG_LEVEL": "WARNING",
        }
        self.redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"]
        self.redis_cmd += ["--save", "", "--appendonly", "no", "--dir", str(root)]

    def up(self) -> None:
        """Create the registry store, start redis, the worker and the API; wait for each."""
        # As `make run` does (it trains first): one process creates the MLflow store, so the
        # API workers and the worker never race on its first migration.
        init = "from core import registry; registry.ensure_store()"
        subprocess.run([sys.executable, "-c", init], cwd=PROJECT_ROOT, env=self.env, check=True)
        self.procs.append(start(self.redis_cmd, self.env, self.root / "redis.log"))
        worker_log = self.root / "worker.log"
        worker = [str(BIN / "celery"), "-A", "workers.make_celery", "worker", "--pool=prefork"]
        worker += ["--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
        self.procs.append(start(worker, self.env, worker_log))
        api = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
        self.procs.append(start(api, self.env, self.root / "api.log"))
        wait_for(lambda: " ready." in worker_log.read_text(), 60, "the worker")
        wait_for(lambda: requests.get(f"{self.api}/health/live", timeout=2).ok, 60, "the API")

    def down(self) -> None:
        """Stop everything started."""
        for proc in reversed(self.procs):
            stop(proc)

    def retrain(self, body: dict[str, Any], timeout: float = 600) -> tuple[float, dict]:
        """POST /retrain, poll the job; returns (seconds submitted -> final, job)."""
        started = time.monotonic()
        response = requests.post(f"{self.api}/retrain", json=body, headers=ADMIN, timeout=10)
        response.raise_for_status()
        location = self.api + response.headers["Location"]

        def final() -> dict | None:
            job = requests.get(location, timeout=5).json()
            return job if job["state"] in ("succeeded", "failed") else None

        job = wait_for(final, timeout, f"job {body}", interval=0.05)
        if job["state"] != "succeeded":
            raise RuntimeError(f"retrain failed: {job['error']}")
        return time.monotonic() - started, job

    def serving(self, model: str) -> dict[int, str | None]:
        """Served version of model by API worker pid, from a burst of /health requests."""
        seen: dict[int, str | None] = {}
        for _ in range(12):
            checks = requests.get(f"{self.api}/health", timeout=5).json()["checks"]
            seen[checks["process"]["pid"]] = checks["models"][model]["version"]
        return seen

    def every_worker_serves(self, model: str, version: str, timeout: float) -> float:
        """Seconds until every API worker serves version of model."""
        started = time.monotonic()

        def done() -> bool:
            seen = self.serving(model)
            return len(seen) >= API_WORKERS and all(v == version for v in seen.values())

        wait_for(done, timeout, f"every API worker to serve {model} v{version}")
        return time.monotonic() - started


def main() -> int:
    """Run the benchmark and print its figures."""
    root = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    bench = Bench(root)
    try:
        bench.up()
        full, job = bench.retrain({"model": "all", "force": True})
        print(f"full forced retrain, both models (full params.yaml): {full:7.1f} s  (target 180)")
        for model, res in job["result"].items():
            verdict = "promoted" if res["promoted"] else "not promoted"
            print(f"    {model:8} v{res['candidate_version']} {verdict}: {res['reason']}")
        first = bench.every_worker_serves("housing", "1", 60)
        print(f"    API workers serving v1 {first:.1f} s after the job succeeded")

        no_change = [bench.retrain({"model": "all"})[0] for _ in range(5)]
        print(
            f"no-change retrain, both models: median {statistics.median(no_change):5.2f} s, "
            f"max {max(no_change):5.2f} s  (target 5)"
        )

        _, job = bench.retrain({"model": "iris", "force": True})
        candidate = job["result"]["iris"]["candidate_version"]
        if not job["result"]["iris"]["promoted"]:  # same params, same score: promote by hand
            promote = f"{bench.api}/models/iris/promote"
            requests.post(promote, json={"version": candidate}, headers=ADMIN, timeout=10)
        swap = bench.every_worker_serves("iris", candidate, 60)
        target = REFRESH_SECONDS + 2
        print(
            f"promotion -> all {API_WORKERS} API workers serving iris v{candidate}: "
            f"{swap:5.2f} s  (target {target:g})"
        )
    finally:
        bench.down()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
