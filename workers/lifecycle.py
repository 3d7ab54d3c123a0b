"""Worker process lifecycle: metrics endpoint, reconciliation at start, periodic sweeps.

Connected by the worker's entry module only; the API never imports this.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown

from core.specs import MODEL_SPECS
from workers import broker, config, metrics_server, retrain_metrics, runtime
from workers.celery_app import publish_retrain
from workers.config import WorkerSettings
from workers.reconcile import reconcile
from workers.runtime import WorkerIdentity

log = logging.getLogger(__name__)


class Sweeper:
    """Reconciles orphaned jobs now and then every JOB_SWEEP_SECONDS, in a daemon thread."""

    def __init__(self, app: Celery, me: WorkerIdentity, ws: WorkerSettings) -> None:
        self.app = app
        self.me = me
        self.ws = ws
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-sweeper", daemon=True)

    def sweep(self) -> None:
        """One reconciliation pass; failures are logged, never raised."""
        try:
            summary = reconcile(
                runtime.job_engine(),
                self.me,
                self.ws,
                publish=lambda job_id: publish_retrain(self.app, job_id),
                pending=lambda: broker.pending_task_ids(self.ws.redis_url),
            )
        except Exception:
            log.exception("reconciling retrain jobs failed; trying again later")
            return
        if summary.requeued or summary.failed or summary.republished:
            log.warning("reconciled retrain jobs: %s", summary)

    def _loop(self) -> None:
        while not self._stop.wait(self.ws.sweep_seconds):
            self.sweep()

    def start(self) -> None:
        """Start the periodic sweeps."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic sweeps."""
        self._stop.set()


_sweeper: Sweeper | None = None


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    runtime.mark_booted()


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _sweeper
    ws = config.load()
    metrics_server.start(ws.metrics_port)
    retrain_metrics.initialise(MODEL_SPECS)
    me = runtime.identity(sender.hostname)
    log.info(
        "worker %s (pid %d) ready; pipeline workspace %s", me.nodename, os.getpid(), ws.workspace
    )
    _sweeper = Sweeper(sender.app, me, ws)
    _sweeper.sweep()  # jobs an earlier incarnation of this node left running go back first
    _sweeper.start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    metrics_server.stop()
