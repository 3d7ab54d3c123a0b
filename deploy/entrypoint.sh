#!/bin/sh
# Container entry point: one image, several roles.
#   api     gunicorn serving the Flask app (default)
#   worker  Celery worker running retrains in its own workspace, $PIPELINE_WORKSPACE (the
#           retrain queue)
#   monitor Celery worker running the periodic drift/quality checks and retention (the
#           monitoring queue); metrics on WORKER_METRICS_PORT (compose sets 9102)
#   beat    Celery beat, the monitor's schedule: run exactly one
#   migrate bring the app database (DATABASE_URL) and MLflow's store (MLFLOW_BACKEND_STORE_URI,
#           when set) to this image's schema, then exit: before anything else uses them
#   init    migrate, then train and register models when the registry has no champion; exit
#   *       any other command runs as given (e.g. `mlflow server ...`, `sh`)
set -eu
cd /app

workspace() {
  # A workspace of data and state only (DVC outputs, lock, cache); the pipeline code and params
  # are links into this image, refreshed at every start, so a new image's apply at once.
  python -m pipeline.cli init-workspace "${PIPELINE_WORKSPACE:=/app/var/workspace}"
  export PIPELINE_WORKSPACE
}

case "${1:-api}" in
  api)
    shift 2>/dev/null || true
    exec gunicorn -c deploy/gunicorn.conf.py "app:create_app()" "$@"
    ;;
  worker)
    shift
    workspace
    exec celery -A workers.make_celery worker -Q retrain --pool prefork --concurrency 1 \
      --without-gossip --without-mingle --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  monitor)
    shift
    # The checks only read their thresholds from params.yaml: the image's own.
    export PIPELINE_WORKSPACE=/app
    exec celery -A workers.make_celery worker -Q monitoring -n "monitor@%h" --pool prefork \
      --concurrency 1 --without-gossip --without-mingle --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    shift
    exec celery -A workers.make_celery beat --schedule "${STATE_DIR:-/app/var}/celerybeat-schedule" \
      --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  migrate)
    exec python -m pipeline.cli migrate
    ;;
  init)
    python -m pipeline.cli migrate
    workspace
    exec python -m pipeline.cli train --if-missing --workspace "$PIPELINE_WORKSPACE"
    ;;
  *)
    exec "$@"
    ;;
esac
