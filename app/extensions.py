"""Flask extensions, built per app: the flask-smorest Api, the Prometheus exporter, Celery."""

from __future__ import annotations

import os

from celery import Celery
from flask import Flask, Request
from flask_smorest import Api
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

from app.auth import SECURITY_SCHEME
from app.errors import ErrorSchema
from core import metrics as project_metrics
from core.tasks import CONNECT_TIMEOUT, broker_options

# Publishing from an API request must give up fast (the client gets a 503 within 2 s): short
# socket timeouts, and one quick publish retry (core.tasks.PUBLISH_RETRY_POLICY).
PUBLISH_SOCKET_TIMEOUT = 0.5

API_DESCRIPTION = """\
Predictions from scikit-learn models served from the MLflow Model Registry (`@champion`),
hot-swapped without restarts. Errors always have the shape
`{"code", "status", "message", "errors"}`. Admin endpoints need `Authorization: Bearer <token>`.
"""


class ServiceApi(Api):
    """flask-smorest's Api documenting our error shape (code, status and message required)."""

    ERROR_SCHEMA = ErrorSchema


def make_api(app: Flask) -> Api:
    """The flask-smorest Api of app, with the bearer security scheme declared."""
    api = ServiceApi(
        app,
        spec_kwargs={
            "info": {"description": API_DESCRIPTION},
        },
    )
    api.spec.components.security_scheme("bearerAuth", SECURITY_SCHEME)
    return api


def path(req: Request) -> str:
    """The route template of a request, so the `path` label has one value per endpoint.

    Raw paths would give every mistyped URL its own time series; the function's name is the
    label name prometheus_flask_exporter uses.
    """
    rule = req.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def make_metrics(app: Flask) -> PrometheusMetrics:
    """The HTTP metrics exporter of app; multiprocess-aware under gunicorn."""
    options = {"group_by": path, "excluded_paths": ["^/metrics"]}
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker writes samples to mmap files; /metrics aggregates all of them.
        metrics = GunicornPrometheusMetrics(app, **options)
    else:
        # A fresh registry per app, so building the app twice in one process never raises
        # "Duplicated timeseries"; the project metrics are exposed through it as well.
        registry = CollectorRegistry(auto_describe=True)
        project_metrics.register_into(registry)
        metrics = PrometheusMetrics(app, path=None, registry=registry, **options)
    app.extensions["prometheus_metrics"] = metrics
    return metrics


def celery_init_app(app: Flask) -> Celery:
    """The Celery client that publishes retrains, from app.config (pallets examples/celery).

    The API only publishes tasks by name (core.tasks), so it has no task class and imports no
    task; the worker builds its own Celery app (workers/celery_app.py).
    """
    celery_app = Celery(app.name)
    celery_app.config_from_object(
        broker_options(app.config["REDIS_URL"], PUBLISH_SOCKET_TIMEOUT, CONNECT_TIMEOUT)
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
