"""The periodic monitor tasks that beat schedules: small, they delegate to workers.monitor.

Both are acknowledged on receipt (acks_late=False, unlike the retrain): a check lost with its
worker is simply done again at the next interval, never redelivered late. Their queue, expiry
and time limits are set in workers.celery_app.monitor_config.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import Task, shared_task

from core import registry
from core.tasks import MONITOR_CHECK_TASK, RETENTION_TASK, publish_retrain
from workers import monitor, runtime


@shared_task(name=MONITOR_CHECK_TASK, bind=True, ignore_result=True, acks_late=False)
def check(self: Task) -> dict[str, Any]:
    """Check every model's input drift and live quality; retrain the degraded ones."""
    with monitor.counted(monitor.CHECK):
        registry.configure(runtime.settings().mlflow_tracking_uri)
        return monitor.check_all(
            runtime.job_engine(), runtime.settings(), publish=partial(publish_retrain, self.app)
        )


@shared_task(name=RETENTION_TASK, ignore_result=True, acks_late=False)
def retention() -> dict[str, Any]:
    """Delete prediction log rows and monitor reports older than the retention period."""
    with monitor.counted(monitor.RETENTION):
        return monitor.retention.run(runtime.job_engine(), runtime.settings())
