"""The Celery contract between the API and the workers: task names, queues, broker options.

The API publishes tasks by name and never imports the code that runs them; the workers register
their tasks under the same names. Both build their Celery app from broker_options().
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

RETRAIN_TASK = "workers.retrain"
RETRAIN_QUEUE = "retrain"
MONITOR_CHECK_TASK = "workers.monitor.check"
RETENTION_TASK = "workers.monitor.retention"
MONITOR_QUEUE = "monitoring"  # only the monitor worker consumes it

CONNECT_TIMEOUT = 0.5
# Bounded retries for publishing and for result writes (Celery's default retries 20 times).
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.3,
}


def broker_options(
    redis_url: str, socket_timeout: float, connection_timeout: float
) -> dict[str, Any]:
    """Celery settings both sides share: Redis at redis_url, JSON, bounded timeouts."""
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "task_default_queue": RETRAIN_QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # The SQL job record is the source of truth; results in Redis would only expire.
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": connection_timeout,
        "broker_transport_options": {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "health_check_interval": 10,
        },
        "redis_socket_timeout": socket_timeout,
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        "redis_retry_on_timeout": False,
        "result_backend_transport_options": {"retry_policy": dict(PUBLISH_RETRY_POLICY)},
        "task_publish_retry": True,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
    }


def publish_retrain(celery_app: Celery, job_id: str) -> None:
    """Publish the retrain message of a recorded job (task id = job id); raises when it fails."""
    # ignore_result: otherwise send_task subscribes to the result channel, one more Redis round
    # trip that can fail, for a result nobody reads (clients poll the job record).
    celery_app.send_task(
        RETRAIN_TASK, args=[job_id], task_id=job_id, queue=RETRAIN_QUEUE, ignore_result=True
    )
