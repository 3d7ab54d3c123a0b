"""gunicorn settings for the API: `gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`.

Environment: API_PORT (8000), WEB_CONCURRENCY (2 workers), GUNICORN_TIMEOUT (60 s),
GUNICORN_GRACEFUL_TIMEOUT (30 s), PROMETHEUS_MULTIPROC_DIR (default: a per-port folder in the
system temp dir), FORWARDED_ALLOW_IPS (127.0.0.1).

SIGTERM stops gracefully without resetting anyone: new connections are refused, requests already
queued on the socket are answered, and each worker flushes its prediction log before it exits.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import struct
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


# -- graceful stop without resets --------------------------------------------------------------
# On SIGTERM gunicorn's sync workers finish the request they hold and exit; connections already
# queued on the listening socket (the kernel completed their handshake, the client sent its
# request) are then reset when the socket closes: an nginx in front answers 502 for each
# (gunicorn issues #2409, #3397). Instead the master first makes the socket drop new connection
# attempts (a classic BPF filter that drops every packet: clients retry, then find the port
# closed and are refused), and each worker answers what is already queued before it exits.
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux; SO_GET_FILTER is the same
_BPF_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, return 0: drop


def _refuse_new_connections(sock: socket.socket) -> bool:
    """Drop new connection attempts on a listening socket; the queued ones stay acceptable."""
    program = ctypes.create_string_buffer(_BPF_DROP_ALL)
    fprog = struct.pack("HP", 1, ctypes.addressof(program))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:  # not Linux, or not allowed: keep gunicorn's own behaviour
        return False
    return True


def _refusing(sock: socket.socket) -> bool:
    """True when the master attached the drop-all filter (the whole server is stopping)."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, 64))
    except OSError:
        return False


def _stop_refusing_new_connections(server) -> None:
    """Wrap the arbiter's stop() so a graceful stop refuses new connections first."""
    stop = server.stop

    def stop_gracefully(graceful: bool = True) -> None:
        # Only when these sockets are this server's alone (gunicorn's own test before it unlinks
        # them): after a USR2 re-exec the new master shares them and must keep accepting.
        own_sockets = (
            server.reexec_pid == server.master_pid == 0
            and not server.systemd
            and not server.cfg.reuse_port
        )
        if graceful and own_sockets:
            for listener in server.LISTENERS:
                _refuse_new_connections(listener.sock)
        stop(graceful)

    server.stop = stop_gracefully


def _answer_queued_connections(worker) -> int:
    """In a stopping sync worker: answer the connections still queued on its listeners."""
    from gunicorn.workers.sync import SyncWorker

    if not isinstance(worker, SyncWorker):
        return 0
    answered = 0
    for listener in worker.sockets:
        if not _refusing(listener.sock):
            continue  # only this worker stops (max_requests, HUP, TTOU): the others accept
        listener.setblocking(False)
        while True:
            try:
                worker.accept(listener)  # accept + handle one request
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue  # that client gave up while queued
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break  # nothing queued any more
                raise
            answered += 1
    return answered


def when_ready(server) -> None:
    """The master is up: make its graceful stop refuse new connections before it drains."""
    _stop_refusing_new_connections(server)


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
    """Answer queued connections, then flush the prediction log (SIGTERM loses nothing)."""
    try:
        answered = _answer_queued_connections(worker)
        if answered:
            server.log.info("answered %d queued requests before exiting", answered)
    except Exception:  # what is left is reset by the kernel, as without this hook
        server.log.exception("worker_exit: answering queued requests failed")
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
