"""The README's first command exactly as a newcomer runs it: a fresh clone, `make run` with the
production params.yaml (venv and pinned install, training both models, serving), ready, a
prediction from each model, then a clean stop.

Not part of `make test` (it installs a venv and trains the production models from scratch):
`.ci/run` runs it as `make first-run` after the suite."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from core.settings import PROJECT_ROOT
from core.specs import MODEL_SPECS
from tests import procs

pytestmark = pytest.mark.first_run

# What `make run` listens on by default: api, worker and monitor metrics, Prometheus.
DEFAULT_PORTS = (8000, 9101, 9102, 9090)
API = "http://127.0.0.1:8000"
# A newcomer's shell has none of the settings tests and CI point elsewhere.
PROJECT_VARIABLES = ("STATE_DIR", "MLFLOW_", "DATABASE_URL", "REDIS_URL", "PIPELINE_", "API_")
# Venv install, production training and start-up on a loaded 2-core machine, with room to spare.
READY_SECONDS = 45 * 60


def listening(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(READY_SECONDS + 600)
def test_make_run_from_a_fresh_clone_serves_both_models_and_stops_cleanly(tmp_path):
    busy = [port for port in DEFAULT_PORTS if listening(port)]
    assert not busy, f"`make run` needs its default ports; in use: {busy}"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    assert not (clone / ".venv").exists() and not (clone / "var").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES)}

    make = procs.start(["make", "run"], env, tmp_path / "make-run.log", cwd=clone)
    try:
        procs.wait_http(f"{API}/health/ready", READY_SECONDS, make)
        procs.wait_all_workers_ready(API, 2, 300)
        for name, spec in MODEL_SPECS.items():
            response = requests.post(f"{API}/predict/{name}", json=spec.example_row(), timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"]["version"] == "1" and body["model"]["alias"] == "champion"
            if spec.task == "classification":
                assert body["prediction"] in spec.classes
            else:
                assert 0.1 < body["prediction"] < 10, body  # 10k to 1M USD
            # Production params: the best CV candidate fits the budgets, nothing was passed over.
            train = json.loads((clone / "models" / name / "train.json").read_text())
            best = (max if spec.greater_is_better else min)(
                train["candidates"], key=lambda c: c["cv_metric"]
            )
            assert train["algorithm"] == best["algorithm"] and train["excluded"] == [], train
            served = requests.get(f"{API}/models/info", timeout=30).json()
            assert any(m["algorithm"] == best["algorithm"] for m in served["models"]), served
        tree = psutil.Process(make.pid).children(recursive=True)
        launcher = psutil.Process(make.pid).children()[0]
    except BaseException:
        procs.stop(make, signal.SIGKILL)
        raise

    # What a service manager does: SIGTERM to the launcher that `make run` became.
    launcher.send_signal(signal.SIGTERM)
    try:
        code = make.wait(timeout=120)
    finally:
        log = procs.tail(make, 80)
        procs.stop(make, signal.SIGKILL)
    assert code == 0, f"`make run` exited {code} after SIGTERM:\n{log}"
    leftovers = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, f"processes left running: {leftovers}\n{log}"
    still = [port for port in DEFAULT_PORTS if listening(port)]
    assert not still, f"ports still open after the stop: {still}\n{log}"
    assert (clone / "var" / "mlflow.db").exists() and Path(clone / ".venv").is_dir()
    # Every artefact in the state dir, none in MLflow's default ./mlruns.
    assert list((clone / "var" / "mlartifacts").rglob("model.skops"))
    assert not (clone / "mlruns").exists()
