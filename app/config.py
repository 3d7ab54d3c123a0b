"""Configuration of the API process: the Flask app's settings and those of its gunicorn server.

Every setting comes from an environment variable declared below (name, default, meaning);
create_app reads ApiSettings once, deploy/gunicorn.conf.py reads ServerSettings once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from core.settings import Settings, env


class ApiSettings(Settings):
    """What the Flask app reads from the environment."""

    api_admin_token: str | None = env(
        "API_ADMIN_TOKEN",
        None,
        "bearer token of admin endpoints (unset: they answer 403)",
        shown="unset",
    )
    model_refresh_seconds: float = env(
        "MODEL_REFRESH_SECONDS", 5.0, "how often each API worker checks `@champion` (s)"
    )
    max_batch_rows: int = env("MAX_BATCH_ROWS", 10_000, "largest accepted `instances` batch")
    max_content_length: int = env(
        "MAX_CONTENT_LENGTH", 8 * 1024 * 1024, "largest request body in bytes (413 beyond)"
    )
    pinned_versions_max: int = env(
        "PINNED_VERSIONS_MAX",
        4,
        "pinned versions (not the champion) each API worker keeps loaded; least recently used "
        "evicted first",
    )
    pinned_versions_max_mb: float = env(
        "PINNED_VERSIONS_MAX_MB",
        256.0,
        "memory budget of those pinned versions per API worker (MB, estimated from each "
        "model's serialized size)",
    )
    shadow_share: float = env(
        "SHADOW_SHARE",
        0.2,
        "share of unpinned requests the version that did not answer also scores, off the "
        "request path, while a model has a `@challenger` (0 turns shadow scoring off)",
    )
    shadow_queue_max_rows: int = env(
        "SHADOW_QUEUE_MAX_ROWS",
        20_000,
        "rows waiting for shadow scoring per API worker; requests beyond are not shadowed "
        "(counted as dropped)",
    )
    prediction_log_enabled: bool = env(
        "PREDICTION_LOG_ENABLED", True, "store every predicted row in the prediction log"
    )
    # Short, frequent flushes: each costs the worker's CPU briefly instead of one longer stall
    # per second that shows up in the tail latency.
    prediction_log_flush_seconds: float = env(
        "PREDICTION_LOG_FLUSH_SECONDS", 0.25, "how often buffered prediction-log rows are written"
    )
    prediction_log_flush_rows: int = env(
        "PREDICTION_LOG_FLUSH_ROWS", 20_000, "flush sooner once this many rows wait"
    )
    prediction_log_max_pending_rows: int = env(
        "PREDICTION_LOG_MAX_PENDING_ROWS",
        100_000,
        "buffer bound per API worker; when full, requests wait for the writer",
    )
    prediction_log_block_seconds: float = env(
        "PREDICTION_LOG_BLOCK_SECONDS",
        5.0,
        "longest such wait, after which rows are dropped (and counted)",
    )
    request_log_enabled: bool = env("REQUEST_LOG_ENABLED", True, "one JSON log line per request")

    @field_validator("shadow_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("SHADOW_SHARE must be between 0 and 1")
        return value


class ServerSettings(Settings):
    """What deploy/gunicorn.conf.py reads from the environment."""

    api_port: int = env("API_PORT", 8000, "port the API listens on")
    web_concurrency: int = env(
        "WEB_CONCURRENCY", 2, "gunicorn workers (each holds its own copy of every model)"
    )
    gunicorn_timeout: int = env("GUNICORN_TIMEOUT", 60, "seconds before a silent worker is killed")
    gunicorn_graceful_timeout: int = env(
        "GUNICORN_GRACEFUL_TIMEOUT", 30, "seconds a stopping worker may take to finish"
    )
    forwarded_allow_ips: str = env(
        "FORWARDED_ALLOW_IPS", "127.0.0.1", "proxies whose X-Forwarded-* headers are trusted"
    )
    prometheus_multiproc_dir: Path | None = env(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "metrics files of the gunicorn workers, emptied at start",
        shown="$TMPDIR/prediction-api-prometheus-$API_PORT",
    )

    @model_validator(mode="after")
    def _metrics_folder(self) -> ServerSettings:
        """One metrics folder per port, so two servers on one host never sum each other."""
        if self.prometheus_multiproc_dir is None:
            folder = f"prediction-api-prometheus-{self.api_port}"
            self.prometheus_multiproc_dir = Path(tempfile.gettempdir()) / folder
        return self


def load_config() -> dict[str, Any]:
    """The Flask config of the API: the environment (read now) and fixed settings."""
    return {
        **ApiSettings().model_dump(by_alias=True),
        # Background services (model refresher, log writer) start on first use in the serving
        # process; gunicorn's post_fork starts them eagerly in each worker.
        "START_SERVICES_ON_FIRST_REQUEST": True,
        # flask-smorest / OpenAPI; Swagger UI assets come from swagger-ui-bundle (app/docs.py).
        "API_TITLE": "Prediction service",
        "API_VERSION": "1.0.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    }
