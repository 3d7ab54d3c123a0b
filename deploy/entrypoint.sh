#!/bin/sh
# Container entry point: one image, several roles.
#   api     gunicorn serving the Flask app (default)
#   worker  Celery worker running retrains in $PIPELINE_WORKSPACE (the retrain queue)
#   monitor Celery worker running the periodic drift/quality checks and retention (the
#           monitoring queue); metrics on WORKER_METRICS_PORT (compose sets 9102)
#   beat    Celery beat, the monitor's schedule: run exactly one
#   init    train and register models when the registry has no champion, then exit
#   *       any other command runs as given (e.g. `mlflow server ...`, `sh`)
set -eu
cd /app

workspace() {
  # The worker and init run DVC in a workspace on a volume so the DVC cache outlives containers.
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
    workspace  # the checks read their thresholds from the workspace's params.yaml
    exec celery -A workers.make_celery worker -Q monitoring -n "monitor@%h" --pool prefork \
      --concurrency 1 --without-gossip --without-mingle --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    shift
    exec celery -A workers.make_celery beat --schedule "${STATE_DIR:-/app/var}/celerybeat-schedule" \
      --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  init)
    workspace
    exec python -m pipeline.cli train --if-missing --workspace "$PIPELINE_WORKSPACE"
    ;;
  *)
    exec "$@"
    ;;
esac
