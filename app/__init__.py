"""The Flask application factory: `gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`.

Nothing is imported here at module level: deploy/gunicorn.conf.py reads app.config before the
metrics folder is set, and prometheus_client must not be imported until it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask


def _blueprints() -> list:
    """Every API blueprint, in documentation order; new resources are added here."""
    from app.canary import blp as canary
    from app.feedback import blp as feedback
    from app.health import blp as health
    from app.jobs import blp as jobs
    from app.metrics_api import blp as metrics
    from app.mlflow_scoring import blp as mlflow_scoring
    from app.models_api import blp as models
    from app.predict import blp as predict
    from app.prediction_log_api import blp as predictions
    from app.v2 import blp as v2

    return [
        predict,
        v2,
        mlflow_scoring,
        models,
        canary,
        feedback,
        predictions,
        health,
        metrics,
        jobs,
    ]


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config (environment, then overrides), logging, extensions, blueprints and
    error handlers. Loads no model and connects to nothing."""
    from app.config import load_config
    from app.docs import make_docs_assets_blueprint
    from app.errors import register_error_handlers
    from app.extensions import celery_init_app, make_api, make_metrics
    from app.predict.schemas import register_components
    from app.request_log import configure_logging, init_request_log
    from app.runtime import init_runtime
    from core import registry

    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(load_config())
    app.config.from_mapping(overrides or {})
    app.json.sort_keys = False  # keep documented field order in schema-dumped responses
    configure_logging(app.config["LOG_LEVEL"])
    # Only records the URI (process-wide); no connection is made until a worker needs one.
    registry.configure(app.config["MLFLOW_TRACKING_URI"])

    # Order matters for the before_request hooks: request id first, then the runtime.
    init_request_log(app)
    init_runtime(app)
    make_metrics(app)

    api = make_api(app)
    register_components(api.spec, app.config["MAX_BATCH_ROWS"])
    for blueprint in _blueprints():
        api.register_blueprint(blueprint)
    app.register_blueprint(make_docs_assets_blueprint(app.config["OPENAPI_SWAGGER_UI_URL"]))
    register_error_handlers(app)  # after the Api, replacing its HTTPException handler
    celery_init_app(app)
    return app
