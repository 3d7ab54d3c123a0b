"""Environment-driven settings shared by the API, the worker and the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Quiet, offline defaults for the libraries we embed; callers may still override them.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def env_int(name: str, default: int) -> int:
    """Integer environment variable; unset or empty gives default."""
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    """Float environment variable; unset or empty gives default."""
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    """Boolean environment variable (1/true/yes/on); unset or empty gives default."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def apply_quiet_env() -> None:
    """Turn off telemetry and analytics for MLflow and DVC in this process and its children."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def state_dir() -> Path:
    """Folder for local state (registry database, artifacts, app database); STATE_DIR overrides."""
    return Path(os.environ.get("STATE_DIR", PROJECT_ROOT / "var")).resolve()


def mlflow_tracking_uri() -> str:
    """MLflow tracking and registry URI: MLFLOW_TRACKING_URI or a SQLite file under state_dir()."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{state_dir() / 'mlflow.db'}"


def mlflow_artifact_root() -> str:
    """Where new MLflow experiments keep artifacts (embedded mode only)."""
    return os.environ.get("MLFLOW_ARTIFACT_ROOT") or (state_dir() / "mlartifacts").as_uri()


def database_url() -> str:
    """SQLAlchemy URL for job records and the prediction log."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{state_dir() / 'app.db'}"


def redis_url() -> str:
    """Redis URL for the Celery broker and result backend."""
    return os.environ.get("REDIS_URL", "redis://localhost:6379/0")


def experiment_name() -> str:
    """MLflow experiment that pipeline runs are logged under."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME", "prediction-service")
