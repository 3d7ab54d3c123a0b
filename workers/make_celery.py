"""Worker and beat entry point (pallets/flask examples/celery style):

celery -A workers.make_celery worker -Q retrain --pool=prefork --concurrency=1
celery -A workers.make_celery worker -Q monitoring -n monitor@%h --concurrency=1
celery -A workers.make_celery beat --schedule var/celerybeat-schedule   # exactly one
"""

from workers.celery_app import create_celery_app

celery_app = create_celery_app()
