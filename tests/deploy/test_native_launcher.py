"""The native launcher from a clean clone: `make stack` starts redis, api, worker, monitor, beat
and Prometheus under honcho; the API serves, a retrain completes, and SIGTERM stops everything
cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import requests

from core.settings import PROJECT_ROOT
from tests import procs

TOKEN = "native-launcher-token"
IRIS_ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def test_make_stack_from_a_clean_clone(trained_registry, tmp_path):
    assert shutil.which("redis-server"), "redis-server is needed for the launcher's own Redis"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    # The pinned requirements are already installed in this venv: share it instead of
    # spending a minute reinstalling the same wheels.
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy2(trained_registry.state_dir / "mlflow.db", state / "mlflow.db")
    workspace = tmp_path / "workspace"
    shutil.copytree(trained_registry.workspace, workspace, symlinks=True)
    api_port, metrics_port, monitor_port, redis_port, prom_port = (
        procs.free_port() for _ in range(5)
    )
    env = {
        **trained_registry.env,
        "STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "DATABASE_URL": f"sqlite:///{state / 'app.db'}",
        # Nothing answers there: the launcher must start its own redis-server.
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "API_PORT": str(api_port),
        "WORKER_METRICS_PORT": str(metrics_port),
        "MONITOR_METRICS_PORT": str(monitor_port),
        "PROMETHEUS_PORT": str(prom_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "api-metrics"),
        "API_ADMIN_TOKEN": TOKEN,
        "PIPELINE_WORKSPACE": str(workspace),
        "MODEL_REFRESH_SECONDS": "1",
        "PYTHONPATH": str(clone),
    }
    launcher = procs.start(["make", "stack"], env, tmp_path / "stack.log", cwd=clone)
    api = f"http://127.0.0.1:{api_port}"
    try:
        procs.wait_http(f"{api}/health/ready", 180, launcher)
        procs.wait_all_workers_ready(api, 2, 60)
        health = requests.get(f"{api}/health", timeout=5).json()
        assert health["status"] == "ok", health

        r = requests.post(f"{api}/predict/iris", json=IRIS_ROW, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == "virginica"

        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = requests.post(f"{api}/retrain", json={"model": "all"}, headers=auth, timeout=10)
        assert r.status_code == 202, r.text
        job_url = f"{api}{r.headers['Location']}"
        job = procs.wait_until(
            lambda: (
                (j := requests.get(job_url, timeout=5).json())["state"] in ("succeeded", "failed")
                and j
            ),
            120,
            "the retrain to finish",
            interval=0.5,
        )
        assert job["state"] == "succeeded", job

        prom = f"http://127.0.0.1:{prom_port}"
        up = procs.wait_until(
            lambda: (
                {
                    t["labels"]["job"]: t["health"]
                    for t in requests.get(f"{prom}/api/v1/targets", timeout=5).json()["data"][
                        "activeTargets"
                    ]
                    if t["health"] == "up"
                }
                == {"api": "up", "worker": "up", "monitor": "up"}
            ),
            60,
            "Prometheus to scrape api, worker and monitor",
            interval=0.5,
        )
        assert up
        children = psutil.Process(launcher.pid).children(recursive=True)
        # make, honcho, redis, gunicorn (+workers), celery worker, monitor, beat, prometheus
        assert len(children) >= 7
    finally:
        code = procs.stop(launcher, signal.SIGTERM, timeout=60)
    log = procs.tail(launcher, 60)
    leftovers = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, f"processes left running: {leftovers}\n{log}"
    assert "SIGKILL" not in log, log
    for port in (api_port, metrics_port, monitor_port, redis_port, prom_port):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            raise AssertionError(f"port {port} still answers after shutdown")
        except requests.ConnectionError:
            pass
    assert code is not None
