"""Worker settings (retrain and monitor workers, beat), each from an environment variable.

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
WORKER_METRICS_PORT         9101                worker's Prometheus endpoint (0 disables it);
                                                the monitor worker is started with 9102
MONITOR_INTERVAL_SECONDS    300                 how often beat queues the drift and live-quality
                                                check (an unstarted check expires after that)
RETENTION_INTERVAL_SECONDS  3600                how often beat queues the retention job
MONITOR_TIME_LIMIT          600                 hard time limit of one monitor task (s); the
                                                soft limit is 30 s earlier
PREDICTION_LOG_RETENTION_DAYS 30                prediction log rows and monitor reports older
                                                than this are deleted (feedback is kept; 0
                                                keeps everything)
RETENTION_BATCH_ROWS        5000                rows deleted per short transaction
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core import settings
from core.settings import PROJECT_ROOT, env_float, env_int

RETRAIN_TASK = "workers.retrain"  # the API publishes by name and never imports the task
RETRAIN_QUEUE = "retrain"
MONITOR_QUEUE = "monitoring"  # only the monitor worker consumes it
MONITOR_CHECK_TASK = "workers.monitor.check"
RETENTION_TASK = "workers.monitor.retention"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the workers, the job reconciler and beat read from the environment."""

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
    monitor_interval_seconds: float = 300.0
    retention_interval_seconds: float = 3600.0
    monitor_time_limit: int = 600
    retention_days: float = 30.0
    retention_batch_rows: int = 5000

    @property
    def soft_time_limit(self) -> int:
        """Raised inside the task first, so it can record a clear error before the hard kill."""
        return max(1, self.time_limit - 60)

    @property
    def visibility_timeout(self) -> int:
        """Redis redelivers an unacknowledged message after this; must exceed the time limit."""
        return self.time_limit + 600

    @property
    def monitor_soft_time_limit(self) -> int:
        """Soft limit of a monitor task: raised inside it before the hard kill."""
        return max(1, self.monitor_time_limit - 30)


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
        monitor_interval_seconds=env_float("MONITOR_INTERVAL_SECONDS", 300.0),
        retention_interval_seconds=env_float("RETENTION_INTERVAL_SECONDS", 3600.0),
        monitor_time_limit=env_int("MONITOR_TIME_LIMIT", 600),
        retention_days=env_float("PREDICTION_LOG_RETENTION_DAYS", 30.0),
        retention_batch_rows=env_int("RETENTION_BATCH_ROWS", 5000),
    )
