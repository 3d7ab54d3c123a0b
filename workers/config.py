"""Retrain worker settings, each from an environment variable with a documented default.

Variable                    Default             Meaning
REDIS_URL                   redis://localhost:6379/0  Celery broker and result backend
PIPELINE_WORKSPACE          project root        folder the worker runs `dvc repro` in
RETRAIN_TIME_LIMIT          1800                hard time limit of one retrain (s); the soft
                                                limit is 60 s earlier, the broker's visibility
                                                timeout 600 s later
RETRAIN_MAX_ATTEMPTS        3                   attempts (worker crashes included) before a job
                                                is marked failed
JOB_HEARTBEAT_SECONDS       10                  how often a running job proves it is alive
JOB_STALE_SECONDS           60                  a running job silent for this long is orphaned
JOB_SWEEP_SECONDS           30                  how often a worker reconciles orphaned jobs
JOB_LOST_AFTER_SECONDS      10                  a queued job whose message is missing from the
                                                broker for this long is published again
WORKSPACE_BUSY_WAIT_SECONDS 300                 how long to wait for a leftover pipeline run
                                                (of a crashed attempt) to release the workspace
WORKER_METRICS_PORT         9101                worker's Prometheus endpoint (0 disables it)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core import settings
from core.settings import PROJECT_ROOT, env_float, env_int

RETRAIN_TASK = "workers.retrain"  # the API publishes by name and never imports the task
RETRAIN_QUEUE = "retrain"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the retrain worker and the job reconciler read from the environment."""

    redis_url: str
    workspace: Path
    time_limit: int
    max_attempts: int
    heartbeat_seconds: float
    stale_seconds: float
    sweep_seconds: float
    lost_after_seconds: float
    busy_wait_seconds: float
    metrics_port: int

    @property
    def soft_time_limit(self) -> int:
        """Raised inside the task first, so it can record a clear error before the hard kill."""
        return max(1, self.time_limit - 60)

    @property
    def visibility_timeout(self) -> int:
        """Redis redelivers an unacknowledged message after this; must exceed the time limit."""
        return self.time_limit + 600


def load() -> WorkerSettings:
    """Read the settings from the environment now."""
    return WorkerSettings(
        redis_url=settings.redis_url(),
        workspace=Path(os.environ.get("PIPELINE_WORKSPACE") or PROJECT_ROOT).resolve(),
        time_limit=env_int("RETRAIN_TIME_LIMIT", 1800),
        max_attempts=env_int("RETRAIN_MAX_ATTEMPTS", 3),
        heartbeat_seconds=env_float("JOB_HEARTBEAT_SECONDS", 10.0),
        stale_seconds=env_float("JOB_STALE_SECONDS", 60.0),
        sweep_seconds=env_float("JOB_SWEEP_SECONDS", 30.0),
        lost_after_seconds=env_float("JOB_LOST_AFTER_SECONDS", 10.0),
        busy_wait_seconds=env_float("WORKSPACE_BUSY_WAIT_SECONDS", 300.0),
        metrics_port=env_int("WORKER_METRICS_PORT", 9101),
    )
