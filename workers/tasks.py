"""The retrain task: small, delegates to workers.jobrunner.run_job."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded

from core import jobs
from core.tasks import RETRAIN_TASK
from workers import retrain_metrics, runtime
from workers.jobrunner import run_job, stop_leftover_run

log = logging.getLogger(__name__)


class RetrainTask(Task):
    """Marks the job failed when its process could not (hard time limit, lost for good)."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        """Runs in the worker's main process for a hard time limit: record a clear error."""
        job_id = args[0] if args else task_id
        if isinstance(exc, TimeLimitExceeded):
            # The killed pool process leaves its `dvc repro` behind, holding the workspace.
            stop_leftover_run(job_id)
            error = (
                f"the retrain exceeded its hard time limit of {runtime.settings().time_limit} s "
                "and its process was killed"
            )
        else:
            error = f"the retrain worker failed: {type(exc).__name__}: {exc}"
        try:
            job = jobs.get(runtime.job_engine(), job_id)
            if job is not None and jobs.fail(runtime.job_engine(), job_id, error):
                retrain_metrics.record_failure(job.models, None)
        except Exception:  # the database is down too: the reconciler finishes the job later
            log.exception("could not record the failure of job %s", job_id)


@shared_task(
    name=RETRAIN_TASK,
    bind=True,
    base=RetrainTask,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def retrain(self: Task, job_id: str) -> str:
    """Retrain the models of job job_id (recorded by POST /retrain) and record the outcome."""
    me = runtime.identity(self.request.hostname or "unknown")
    return run_job(job_id, me, runtime.settings(), runtime.job_engine())
