"""The Celery app: configuration for Redis, `celery_init_app` for the Flask factory, publishing.

Shaped like pallets/flask `examples/celery`: the Flask factory calls celery_init_app(app), tasks
are `shared_task`s, and `workers/make_celery.py` is the worker's entry point. This module must
stay importable by the API without pulling in training code: it never imports `pipeline` or
`workers.tasks`; the API publishes the retrain task by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from celery import Celery, Task
from flask import Flask

from workers import config
from workers.config import (
    MONITOR_CHECK_TASK,
    MONITOR_QUEUE,
    RETENTION_TASK,
    RETRAIN_QUEUE,
    RETRAIN_TASK,
    WorkerSettings,
)

# Publishing from an API request must give up fast (the client gets a 503 within 2 s), so the
# API's connections use short socket timeouts and one quick retry. A worker can afford to wait
# longer on a slow broker, but never forever.
CLIENT_SOCKET_TIMEOUT = 0.5
WORKER_SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 0.5
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.3,
}


def celery_config(ws: WorkerSettings, client: bool = False) -> dict[str, Any]:
    """Celery settings for the broker and backend at ws.redis_url (client=True: the API's)."""
    socket_timeout = CLIENT_SOCKET_TIMEOUT if client else WORKER_SOCKET_TIMEOUT
    return {
        "broker_url": ws.redis_url,
        "result_backend": ws.redis_url,
        "task_default_queue": RETRAIN_QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # The SQL job record is the source of truth; results in Redis would only expire.
        "task_ignore_result": True,
        "result_expires": 24 * 3600,
        # A message is acknowledged only after the task ran, and a worker process that dies
        # mid-task gives its message back instead of losing the job.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": ws.time_limit,
        "task_soft_time_limit": ws.soft_time_limit,
        # One retrain at a time per worker process: never hoard a second message.
        "worker_prefetch_multiplier": 1,
        # A broker blip must not cancel a half-done retrain; its job record stays the truth.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": CONNECT_TIMEOUT if client else 4.0,
        "broker_transport_options": {
            # Redis redelivers an unacknowledged message only after this many seconds, so it
            # must exceed the time limit or a long retrain would be run twice at once.
            "visibility_timeout": ws.visibility_timeout,
            # Check for messages to restore every few seconds instead of every 100.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "health_check_interval": 10,
        },
        "redis_socket_timeout": socket_timeout,
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        "redis_retry_on_timeout": False,
        # Bounded retries for result writes too (the default retries 20 times).
        "result_backend_transport_options": {"retry_policy": dict(PUBLISH_RETRY_POLICY)},
        "task_publish_retry": True,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
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


def make_celery(
    ws: WorkerSettings | None = None, include: Iterable[str] = (), **overrides: Any
) -> Celery:
    """A Celery app configured from the environment (the worker's entry uses this)."""
    ws = ws or config.load()
    app = Celery("prediction-service", include=list(include))
    app.config_from_object({**celery_config(ws), **overrides})
    return app


def celery_init_app(app: Flask) -> Celery:
    """Attach a Celery app to the Flask app (pallets/flask examples/celery style).

    The broker comes from app.config["REDIS_URL"] when set, else REDIS_URL; app.config["CELERY"]
    may override any Celery setting. Tasks run inside the Flask app context.
    """

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    ws = config.load()
    if app.config.get("REDIS_URL"):
        ws = replace(ws, redis_url=app.config["REDIS_URL"])
    celery_app = Celery(app.name, task_cls=FlaskTask)
    overrides = app.config.get("CELERY", {})
    celery_app.config_from_object({**celery_config(ws, client=True), **overrides})
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def publish_retrain(celery_app: Celery, job_id: str) -> None:
    """Publish the retrain message for a recorded job (task id = job id); raises when it fails."""
    # ignore_result: otherwise send_task subscribes to the result channel, one more Redis round
    # trip that can fail, for a result nobody reads (clients poll the job record).
    celery_app.send_task(
        RETRAIN_TASK, args=[job_id], task_id=job_id, queue=RETRAIN_QUEUE, ignore_result=True
    )
