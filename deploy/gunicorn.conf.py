"""gunicorn settings for the API: `gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`.

Environment: API_PORT (8000), WEB_CONCURRENCY (2 workers), GUNICORN_TIMEOUT (60 s),
GUNICORN_GRACEFUL_TIMEOUT (30 s), PROMETHEUS_MULTIPROC_DIR (default: a per-port folder in the
system temp dir), FORWARDED_ALLOW_IPS (127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# One BLAS/OpenMP thread per worker, set before numpy or scikit-learn is imported anywhere in
# this process tree: with N workers on N cores, per-worker thread pools oversubscribe the CPU
# and tree models drop to tens of requests per second.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")

_port = os.environ.get("API_PORT", "8000")
# prometheus_client picks its multiprocess mode when first imported, so this must be set here,
# before the app (and prometheus_client) is loaded.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(tempfile.gettempdir()) / f"prediction-api-prometheus-{_port}"),
)
# The preloaded app needs the folder to exist; on_starting empties it once the master runs.
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

bind = f"0.0.0.0:{_port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# The app (Flask, scikit-learn, MLflow imports; no model) is built once in the master and shared
# copy-on-write by the workers; models are loaded only after the fork, in post_fork.
preload_app = True
control_socket_disable = True  # gunicorn 26's control socket is not used; do not create it
accesslog = None  # the app writes one structured JSON line per request instead
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server) -> None:
    """Start with an empty metrics folder: samples of a previous run must not be summed in."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def pre_fork(server, worker) -> None:
    """Freeze the master's objects so workers' collections never write to (copy) their pages."""
    import gc

    gc.freeze()


def post_fork(server, worker) -> None:
    """In each new worker: single-threaded math, then the model cache and the log writer."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # libraries already loaded in the master ignore the env vars
    app = worker.app.wsgi()
    from app.services import get_services

    get_services(app).start()


def worker_exit(server, worker) -> None:
    """Flush the prediction log before the worker goes away (SIGTERM loses nothing answered)."""
    try:
        app = worker.app.wsgi()
        from app.services import get_services

        get_services(app).stop()
    except Exception:  # a failing flush must not hide the worker's own exit status
        server.log.exception("worker_exit: flushing the prediction log failed")


def child_exit(server, worker) -> None:
    """Drop the dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
