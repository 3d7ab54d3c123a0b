"""The periodic monitor tasks that beat schedules: small, they delegate to workers.monitor.

Both are acknowledged on receipt (acks_late=False, unlike the retrain): a check lost with its
worker is simply done again at the next interval, never redelivered late. Their queue, expiry
and time limits are set in workers.celery_app.celery_config.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from core import registry
from workers import config, monitor, runtime
from workers.celery_app import publish_retrain
from workers.config import MONITOR_CHECK_TASK, RETENTION_TASK


@shared_task(name=MONITOR_CHECK_TASK, bind=True, ignore_result=True, acks_late=False)
def check(self: Task) -> dict[str, Any]:
    """Check every model's input drift and live quality; retrain the degraded ones."""
    with monitor.counted(monitor.CHECK):
        registry.configure()
        return monitor.check_all(
            runtime.job_engine(),
            config.load(),
            publish=lambda job_id: publish_retrain(self.app, job_id),
        )


@shared_task(name=RETENTION_TASK, ignore_result=True, acks_late=False)
def retention() -> dict[str, Any]:
    """Delete prediction log rows and monitor reports older than the retention period."""
    with monitor.counted(monitor.RETENTION):
        return monitor.retention(runtime.job_engine(), config.load())
