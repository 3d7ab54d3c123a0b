"""Celery worker side: the retrain task, job reconciliation and the worker's metrics.

The API imports only workers.celery_app and workers.broker (neither imports training code).
"""
