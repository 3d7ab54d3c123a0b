"""POST /retrain, GET /jobs/<id>, GET /jobs: retrain jobs run by the Celery worker."""

from app.jobs.routes import blp

__all__ = ["blp"]
