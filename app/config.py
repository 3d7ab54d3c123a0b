"""Application configuration: every setting comes from an environment variable with a default.

Variable            Default                           Meaning
API_PORT            8000                              port gunicorn binds (deploy/gunicorn.conf.py)
LOG_LEVEL           INFO                              level of the JSON logs on stderr
MLFLOW_TRACKING_URI sqlite:///$STATE_DIR/mlflow.db    MLflow tracking + model registry
DATABASE_URL        sqlite:///$STATE_DIR/app.db       prediction log (and job records)
REDIS_URL           redis://localhost:6379/0          Celery broker the API publishes retrains to
API_ADMIN_TOKEN     (unset)                           bearer token of admin endpoints; unset = 403
MODEL_REFRESH_SECONDS 5                               how often each worker checks @champion
MAX_BATCH_ROWS      10000                             largest accepted "instances" batch
MAX_CONTENT_LENGTH  8388608 (8 MiB)                   largest accepted request body (413 beyond)
PREDICTION_LOG_ENABLED true                           store every predicted row
PREDICTION_LOG_FLUSH_SECONDS 0.25                     how often buffered rows are written
PREDICTION_LOG_FLUSH_ROWS 20000                       flush sooner once this many rows wait
PREDICTION_LOG_MAX_PENDING_ROWS 100000                buffer bound per worker; when full, requests
                                                      wait for the writer (backpressure) up to
PREDICTION_LOG_BLOCK_SECONDS 5                        this long, then drop rows (counted)
REQUEST_LOG_ENABLED true                              one JSON log line per request
"""

from __future__ import annotations

import os

from core import settings
from core.settings import env_bool, env_float, env_int


class Config:
    """Production defaults, read from the environment when the class is instantiated."""

    TESTING = False

    def __init__(self) -> None:
        self.API_PORT = env_int("API_PORT", 8000)
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
        self.MLFLOW_TRACKING_URI = settings.mlflow_tracking_uri()
        self.DATABASE_URL = settings.database_url()
        self.REDIS_URL = settings.redis_url()  # Celery broker the API publishes retrains to
        # An empty token counts as unset: admin endpoints then refuse instead of running open.
        self.API_ADMIN_TOKEN = os.environ.get("API_ADMIN_TOKEN") or None
        self.MODEL_REFRESH_SECONDS = env_float("MODEL_REFRESH_SECONDS", 5.0)
        self.MAX_BATCH_ROWS = env_int("MAX_BATCH_ROWS", 10_000)
        self.MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 8 * 1024 * 1024)
        self.PREDICTION_LOG_ENABLED = env_bool("PREDICTION_LOG_ENABLED", True)
        # Short, frequent flushes: each costs the worker's CPU briefly instead of one longer
        # stall per second that shows up in the tail latency.
        self.PREDICTION_LOG_FLUSH_SECONDS = env_float("PREDICTION_LOG_FLUSH_SECONDS", 0.25)
        self.PREDICTION_LOG_FLUSH_ROWS = env_int("PREDICTION_LOG_FLUSH_ROWS", 20_000)
        self.PREDICTION_LOG_MAX_PENDING_ROWS = env_int("PREDICTION_LOG_MAX_PENDING_ROWS", 100_000)
        self.PREDICTION_LOG_BLOCK_SECONDS = env_float("PREDICTION_LOG_BLOCK_SECONDS", 5.0)
        self.REQUEST_LOG_ENABLED = env_bool("REQUEST_LOG_ENABLED", True)
        # Background services (model refresher, log writer) start on first use in the serving
        # process; gunicorn's post_fork starts them eagerly in each worker.
        self.START_SERVICES_ON_FIRST_REQUEST = True

        # flask-smorest / OpenAPI
        self.API_TITLE = "Prediction service"
        self.API_VERSION = "1.0.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "/docs"
        # Swagger UI assets come from the swagger-ui-bundle package, served by app/docs.py.
        self.OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
        self.JSON_SORT_KEYS = False


class TestConfig(Config):
    """In-process tests: fast refresh, a known admin token, services started by the test."""

    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.API_ADMIN_TOKEN = "test-admin-token"
        self.MODEL_REFRESH_SECONDS = 1.0
        self.PREDICTION_LOG_FLUSH_SECONDS = 0.2
        self.START_SERVICES_ON_FIRST_REQUEST = False
