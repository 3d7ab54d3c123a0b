"""Environment settings: the stores every process shares, and how each process declares its own.

Each variable is declared once, as a field of a settings class (its name, default and meaning):
Settings below for what every process reads, app.config for the API and its server,
workers.config for the workers. A process reads its class once when it starts; the README's
configuration table and deploy/env.example are checked against these declarations
(tests/test_configuration.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Quiet, offline defaults for the libraries we embed; callers may still override them.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def env(name: str, default: Any, meaning: str, shown: str | None = None) -> Any:
    """A field read from the environment variable name; shown: the default as documented."""
    return Field(default, alias=name, description=meaning, json_schema_extra={"shown": shown})


class Settings(BaseSettings):
    """The stores every process uses (local state, MLflow, the app database, Redis) and logging.

    The base of every process's settings class: declared variables only, read by their exact
    names; an empty value keeps the default.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, populate_by_name=True, extra="ignore"
    )

    state_dir: Path = env(
        "STATE_DIR",
        PROJECT_ROOT / "var",
        "local state: MLflow SQLite database, artifacts, app database",
        shown="./var",
    )
    mlflow_tracking_uri: str = env(
        "MLFLOW_TRACKING_URI",
        "",
        "MLflow tracking and registry",
        shown="sqlite:///$STATE_DIR/mlflow.db",
    )
    mlflow_artifact_root: str = env(
        "MLFLOW_ARTIFACT_ROOT",
        "",
        "artifact folder of new experiments in the embedded setup",
        shown="$STATE_DIR/mlartifacts",
    )
    mlflow_experiment_name: str = env(
        "MLFLOW_EXPERIMENT_NAME", "prediction-service", "MLflow experiment of pipeline runs"
    )
    mlflow_backend_store_uri: str = env(
        "MLFLOW_BACKEND_STORE_URI",
        "",
        "MLflow's own database, upgraded by `migrate` (none when the tracking URI is a server)",
        shown="$MLFLOW_TRACKING_URI",
    )
    database_url: str = env(
        "DATABASE_URL",
        "",
        "SQLAlchemy URL of job records, prediction log, feedback and monitor reports",
        shown="sqlite:///$STATE_DIR/app.db",
    )
    redis_url: str = env("REDIS_URL", "redis://localhost:6379/0", "Celery broker and results")
    log_level: str = env("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR (JSON log lines)")

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        """Fill the defaults that live under STATE_DIR."""
        self.state_dir = self.state_dir.expanduser().resolve()
        self.mlflow_tracking_uri = (
            self.mlflow_tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"
        )
        self.mlflow_artifact_root = (
            self.mlflow_artifact_root or (self.state_dir / "mlartifacts").as_uri()
        )
        if not self.mlflow_backend_store_uri and _is_database(self.mlflow_tracking_uri):
            self.mlflow_backend_store_uri = self.mlflow_tracking_uri
        self.database_url = self.database_url or f"sqlite:///{self.state_dir / 'app.db'}"
        self.log_level = self.log_level.upper()
        return self


def _is_database(uri: str) -> bool:
    # The stores MLflow keeps in a database (its others: a tracking server, a folder).
    return uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")


def apply_quiet_env() -> None:
    """Turn off telemetry and analytics for MLflow and DVC in this process and its children."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


# Shortcuts for scripts and the pipeline, which read the environment as it is when they ask.
def state_dir() -> Path:
    """Folder for local state (registry database, artifacts, app database)."""
    return Settings().state_dir


def mlflow_tracking_uri() -> str:
    """MLflow tracking and registry URI."""
    return Settings().mlflow_tracking_uri


def mlflow_artifact_root() -> str:
    """Where new MLflow experiments keep artifacts (embedded mode only)."""
    return Settings().mlflow_artifact_root


def mlflow_backend_store_uri() -> str | None:
    """MLflow's database, when this process can reach it (None: behind a tracking server)."""
    return Settings().mlflow_backend_store_uri or None


def database_url() -> str:
    """SQLAlchemy URL of the application database."""
    return Settings().database_url


def experiment_name() -> str:
    """MLflow experiment that pipeline runs are logged under."""
    return Settings().mlflow_experiment_name
