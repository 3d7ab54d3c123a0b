"""Worker and beat entry point (pallets/flask examples/celery style):

    celery -A workers.make_celery worker -Q retrain --pool=prefork --concurrency=1
    celery -A workers.make_celery worker -Q monitoring -n monitor@%h --concurrency=1
    celery -A workers.make_celery beat --schedule var/celerybeat-schedule   # exactly one

The worker needs no Flask app, so unlike the example this builds the Celery app directly from
the environment (REDIS_URL, DATABASE_URL, MLFLOW_TRACKING_URI, PIPELINE_WORKSPACE, ...).
"""

import sys
from pathlib import Path

# celery puts the current directory on sys.path only while it imports this module and removes
# it afterwards; the pool imports the training code later, so keep our own entry for the project
# root (appended: a duplicate of a PYTHONPATH entry is harmless).
sys.path.append(str(Path(__file__).resolve().parent.parent))

from workers import metrics_server

# prometheus_client fixes its storage mode when first imported: choose the folder first.
metrics_server.use_own_folder()

from workers import lifecycle  # noqa: E402  (connects the worker's start/stop handlers)
from workers.celery_app import make_celery  # noqa: E402

celery_app = make_celery(include=["workers.tasks", "workers.monitor_tasks"])

__all__ = ["celery_app", "lifecycle"]
