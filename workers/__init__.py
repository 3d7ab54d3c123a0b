"""Celery worker side: the retrain and monitor tasks, job reconciliation and the worker's metrics.

Nothing in `app` imports this package; both sides meet in core (core.tasks, core.jobs).
"""
