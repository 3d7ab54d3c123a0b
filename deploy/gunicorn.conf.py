"""gunicorn settings for the API: `gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`.

Environment: app.config.ServerSettings (API_PORT, WEB_CONCURRENCY, GUNICORN_TIMEOUT,
GUNICORN_GRACEFUL_TIMEOUT, FORWARDED_ALLOW_IPS, PROMETHEUS_MULTIPROC_DIR, LOG_LEVEL).

SIGTERM stops gracefully without resetting anyone: new connections are refused, requests already
queued on the socket are answered (deploy/graceful_stop.py), and each worker flushes its
prediction log before it exits.
"""

from __future__ import annotations

import os
import shutil
import sys
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

# gunicorn reads this file before it puts the working directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import ServerSettings  # noqa: E402  (imports neither numpy nor prometheus)
from deploy import graceful_stop  # noqa: E402

_settings = ServerSettings()
# prometheus_client picks its multiprocess mode when first imported, so this must be set here,
# before the app (and prometheus_client) is loaded.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_settings.prometheus_multiproc_dir)
# The preloaded app needs the folder to exist; on_starting empties it once the master runs.
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

bind = f"0.0.0.0:{_settings.api_port}"
workers = _settings.web_concurrency
worker_class = "sync"
timeout = _settings.gunicorn_timeout
graceful_timeout = _settings.gunicorn_graceful_timeout
# The app (Flask, scikit-learn, MLflow imports; no model) is built once in the master and shared
# copy-on-write by the workers; models are loaded only after the fork, in post_fork.
preload_app = True
control_socket_disable = True  # gunicorn 26's control socket is not used; do not create it
accesslog = None  # the app writes one structured JSON line per request instead
errorlog = "-"
loglevel = _settings.log_level.lower()
forwarded_allow_ips = _settings.forwarded_allow_ips


def when_ready(server) -> None:
    """The master is up: make its graceful stop refuse new connections before it drains."""
    graceful_stop.refuse_new_connections_on_stop(server)


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
    from app.runtime import get_runtime

    get_runtime(worker.app.wsgi()).start()


def worker_exit(server, worker) -> None:
    """Answer queued connections, then flush the prediction log (SIGTERM loses nothing)."""
    try:
        answered = graceful_stop.answer_queued_connections(worker)
        if answered:
            server.log.info("answered %d queued requests before exiting", answered)
    except Exception:  # what is left is reset by the kernel, as without this hook
        server.log.exception("worker_exit: answering queued requests failed")
    try:
        from app.runtime import get_runtime

        get_runtime(worker.app.wsgi()).stop()
    except Exception:  # a failing flush must not hide the worker's own exit status
        server.log.exception("worker_exit: flushing the prediction log failed")


def child_exit(server, worker) -> None:
    """Drop the dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
