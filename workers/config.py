"""Settings of the workers (retrain and monitor workers, beat), each from an environment variable.

A worker process reads them once (workers.runtime.settings()); tests build their own with
load().model_copy(update=...).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from core.settings import PROJECT_ROOT, Settings, env


class WorkerSettings(Settings):
    """Everything the workers, the job reconciler and beat read from the environment."""

    workspace: Path = env(
        "PIPELINE_WORKSPACE",
        PROJECT_ROOT,
        "folder the worker runs `dvc repro` in",
        "<project root>",
    )
    time_limit: int = env(
        "RETRAIN_TIME_LIMIT",
        1800,
        "hard time limit of one retrain (s); the soft limit is 60 s earlier, the broker's "
        "visibility timeout 600 s later",
    )
    max_attempts: int = env(
        "RETRAIN_MAX_ATTEMPTS",
        3,
        "attempts of one job (worker crashes included) before it is marked failed",
    )
    heartbeat_seconds: float = env(
        "JOB_HEARTBEAT_SECONDS", 10.0, "how often a running job proves it is alive"
    )
    stale_seconds: float = env(
        "JOB_STALE_SECONDS", 60.0, "a running job silent for this long is orphaned"
    )
    sweep_seconds: float = env(
        "JOB_SWEEP_SECONDS", 30.0, "how often a retrain worker reconciles orphaned jobs"
    )
    lost_after_seconds: float = env(
        "JOB_LOST_AFTER_SECONDS",
        10.0,
        "a queued job whose message is missing from the broker this long is published again",
    )
    busy_wait_seconds: float = env(
        "WORKSPACE_BUSY_WAIT_SECONDS",
        300.0,
        "how long a job waits for a leftover pipeline run to release the workspace",
    )
    metrics_port: int = env(
        "WORKER_METRICS_PORT", 9101, "the worker's Prometheus endpoint (0 turns it off)"
    )
    metrics_dir: Path | None = env(
        "WORKER_PROMETHEUS_DIR",
        None,
        "metrics files of the worker's processes, emptied at start",
        shown="<new temp folder>",
    )
    monitor_interval_seconds: float = env(
        "MONITOR_INTERVAL_SECONDS",
        300.0,
        "how often beat queues the drift and live-quality check (an unstarted one expires)",
    )
    retention_interval_seconds: float = env(
        "RETENTION_INTERVAL_SECONDS", 3600.0, "how often beat queues the retention job"
    )
    monitor_time_limit: int = env(
        "MONITOR_TIME_LIMIT", 600, "hard time limit of one monitor task (s; soft: 30 s earlier)"
    )
    retention_days: float = env(
        "PREDICTION_LOG_RETENTION_DAYS",
        30.0,
        "prediction-log rows and monitor reports older than this are deleted (feedback is "
        "kept; 0 keeps everything)",
    )
    retention_batch_rows: int = env(
        "RETENTION_BATCH_ROWS", 5000, "rows deleted per short retention transaction"
    )

    @model_validator(mode="after")
    def _resolve_workspace(self) -> WorkerSettings:
        """An absolute workspace path: pipeline processes run with their own working folder."""
        self.workspace = self.workspace.expanduser().resolve()
        return self

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
    return WorkerSettings()
