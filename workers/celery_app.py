"""The workers' Celery app: the retrain and monitor tasks, beat's schedule, delivery guarantees.

The API builds its own Celery client from its config (app.extensions.celery_init_app); both
share the task names and broker options of core.tasks.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery

from core.settings import PROJECT_ROOT
from core.tasks import (
    MONITOR_CHECK_TASK,
    MONITOR_QUEUE,
    RETENTION_TASK,
    broker_options,
)
from workers.config import WorkerSettings

# A worker can afford to wait longer on a slow broker than an API request, but never forever.
SOCKET_TIMEOUT = 5.0
CONNECTION_TIMEOUT = 4.0
TASK_MODULES = ["workers.tasks", "workers.monitor_tasks"]


def celery_config(ws: WorkerSettings) -> dict[str, Any]:
    """Celery settings of the workers and beat for the broker at ws.redis_url."""
    options = broker_options(ws.redis_url, SOCKET_TIMEOUT, CONNECTION_TIMEOUT)
    transport = options["broker_transport_options"]
    return {
        **options,
        # A message is acknowledged only after the task ran, and a worker process that dies
        # mid-task gives its message back instead of losing the job.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": ws.time_limit,
        "task_soft_time_limit": ws.soft_time_limit,
        "result_expires": 24 * 3600,
        # One retrain at a time per worker process: never hoard a second message.
        "worker_prefetch_multiplier": 1,
        # A broker blip must not cancel a half-done retrain; its job record stays the truth.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": {
            **transport,
            # Redis redelivers an unacknowledged message only after this many seconds, so it
            # must exceed the time limit or a long retrain would be run twice at once.
            "visibility_timeout": ws.visibility_timeout,
            # Check for messages to restore every few seconds instead of every 100.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        **monitor_config(ws),
    }


def monitor_config(ws: WorkerSettings) -> dict[str, Any]:
    """Routing, time limits and beat's schedule of the periodic monitor tasks."""
    tasks = {
        MONITOR_CHECK_TASK: ws.monitor_interval_seconds,
        RETENTION_TASK: ws.retention_interval_seconds,
    }
    limits = {"time_limit": ws.monitor_time_limit, "soft_time_limit": ws.monitor_soft_time_limit}
    return {
        # Their own queue: a retrain never waits behind a check, nor a check behind a retrain.
        "task_routes": {name: {"queue": MONITOR_QUEUE} for name in tasks},
        # Their own limits, not the retrain's half hour.
        "task_annotations": {name: dict(limits) for name in tasks},
        "beat_schedule": {
            name: {
                "task": name,
                "schedule": interval,
                # A run the monitor worker could not start within one interval is dropped:
                # after an outage the next one is due anyway, so they must not pile up.
                "options": {"expires": interval},
            }
            for name, interval in tasks.items()
        },
    }


def create_celery_app() -> Celery:
    """The worker's Celery app: metrics folder first, lifecycle handlers, then the tasks."""
    # celery puts the current directory on sys.path only while it imports the entry module and
    # removes it afterwards; the pool imports the training code later, so keep the project root
    # (appended: a duplicate of a PYTHONPATH entry is harmless).
    sys.path.append(str(PROJECT_ROOT))
    from workers import metrics_server, runtime

    # prometheus_client fixes its storage mode when first imported: choose the folder first.
    metrics_server.use_own_folder(runtime.settings())
    from workers import lifecycle  # noqa: F401  (connects the worker's start/stop handlers)

    celery_app = Celery("prediction-service", include=TASK_MODULES)
    celery_app.config_from_object(celery_config(runtime.settings()))
    return celery_app
