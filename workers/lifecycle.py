"""Worker process lifecycle: metrics endpoint, reconciliation at start, periodic sweeps.

Every worker serves its metrics; only workers that consume the retrain queue reconcile retrain
jobs (a monitor worker consuming only the monitoring queue does not). Connected by the entry
module only (worker and beat); the API never imports this.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_ready, worker_shutdown

from core import broker
from core.specs import MODEL_SPECS
from core.tasks import MONITOR_QUEUE, RETRAIN_QUEUE, publish_retrain
from workers import metrics_server, monitor, retrain_metrics, runtime
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
                publish=partial(publish_retrain, self.app),
                pending=partial(broker.pending_task_ids, self.ws.redis_url),
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


def consumed_queues(app: Celery) -> set[str]:
    """Names of the queues this worker consumes (-Q, else every declared queue)."""
    return set(app.amqp.queues.consume_from)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _sweeper
    ws = runtime.settings()
    metrics_server.start(ws.metrics_port)
    queues = consumed_queues(sender.app)
    me = runtime.identity(sender.hostname)
    log.info(
        "worker %s (pid %d) ready, consuming %s; pipeline workspace %s",
        me.nodename,
        os.getpid(),
        sorted(queues),
        ws.workspace,
    )
    if MONITOR_QUEUE in queues:
        monitor.initialise_metrics(MODEL_SPECS)
    if RETRAIN_QUEUE not in queues:
        return
    retrain_metrics.initialise(MODEL_SPECS)
    _sweeper = Sweeper(sender.app, me, ws)
    _sweeper.sweep()  # jobs an earlier incarnation of this node left running go back first
    _sweeper.start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    metrics_server.stop()


@beat_init.connect
def _on_beat_init(**_: Any) -> None:
    # Beat only sends tasks and counts nothing: drop the metrics folder the entry module made.
    metrics_server.stop()
