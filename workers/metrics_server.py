"""The worker's Prometheus endpoint, summed over its pool processes.

Retrain metrics are counted in pool processes (and, for hard time limits, in the main process),
so prometheus_client runs in multiprocess mode over a folder of this worker's own: never the
API's PROMETHEUS_MULTIPROC_DIR, which gunicorn wipes and sums separately. The folder must be
chosen before prometheus_client is first imported, which is why create_celery_app() calls
use_own_folder() before it imports anything that counts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from workers.config import WorkerSettings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable

_created: Path | None = None
_server = None


def use_own_folder(ws: WorkerSettings) -> Path:
    """Point prometheus_client (in this process and its children) at the worker's folder."""
    global _created
    if ws.metrics_dir is not None:
        folder = ws.metrics_dir
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a new worker starts its counters from zero
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="prediction-worker-metrics-"))
        _created = folder
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def start(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve /metrics on port from this (main) process; False when disabled or not possible."""
    global _server
    if port <= 0 or _server is not None:
        return False
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:  # a solo worker started without the entry module: its own registry is the truth
        from prometheus_client import REGISTRY

        registry = REGISTRY
    try:
        _server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        # A second worker on the same host: keep retraining, just without an endpoint.
        log.error("worker metrics endpoint not started on port %d: %s", port, exc)
        return False
    log.info("worker metrics on http://%s:%d/metrics", addr, port)
    return True


def stop() -> None:
    """Stop the endpoint and remove the temp folder this worker created."""
    global _server, _created
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
        _created = None
