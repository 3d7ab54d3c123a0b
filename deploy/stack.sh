#!/usr/bin/env bash
# Native launcher: the compose stack's processes on one machine, under supervisord
# (deploy/supervisord.conf says how each is run, restarted and stopped).
#   api, worker (retrains), monitor (drift and live-quality checks, retention) and beat (their
#   schedule) always; redis when nothing answers at REDIS_URL (and redis-server is installed);
#   prometheus when installed (STACK_PROMETHEUS=off to skip). A process that dies is restarted
#   and the others keep running; Ctrl-C / SIGTERM / SIGHUP stops them all, exit status 0.
#   `deploy/stack.sh ctl status` (or `ctl restart api`, ...) runs supervisorctl against it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export STATE_DIR="${STATE_DIR:-$PWD/var}"
export API_PORT="${API_PORT:-8000}" WORKER_METRICS_PORT="${WORKER_METRICS_PORT:-9101}"
export MONITOR_METRICS_PORT="${MONITOR_METRICS_PORT:-9102}"
export PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}" LOG_LEVEL="${LOG_LEVEL:-INFO}"
export REDIS_URL="${REDIS_URL:-redis://localhost:6379/0}"
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1
conf=deploy/supervisord.conf
if [ "${1:-}" = ctl ]; then
  shift
  exec supervisorctl -c "$conf" "$@"
fi
mkdir -p "$STATE_DIR"

# Bring the app database and MLflow's store to the current schema (creating them when new) once,
# before several processes start on them. Without PROMETHEUS_MULTIPROC_DIR: the api makes that
# folder when it starts, and a one-shot command has no metrics to share.
env -u PROMETHEUS_MULTIPROC_DIR python -m pipeline.cli migrate

processes=(api worker monitor beat)
redis_up() { python - "$REDIS_URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}
REDIS_PORT="$(python -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)' "$REDIS_URL")"
export REDIS_PORT STACK_START_REDIS=false STACK_START_PROMETHEUS=false
if ! redis_up; then
  if command -v redis-server >/dev/null; then
    mkdir -p "$STATE_DIR/redis"
    STACK_START_REDIS=true
    processes=(redis "${processes[@]}")
  else
    echo "warning: nothing answers at $REDIS_URL and redis-server is not installed" >&2
  fi
fi
if command -v prometheus >/dev/null && [ "${STACK_PROMETHEUS:-auto}" != "off" ]; then
  python monitoring/render_config.py --api "127.0.0.1:$API_PORT" \
    --worker "127.0.0.1:$WORKER_METRICS_PORT" --monitor "127.0.0.1:$MONITOR_METRICS_PORT" \
    > "$STATE_DIR/prometheus.yml"
  STACK_START_PROMETHEUS=true
  processes+=(prometheus)
fi
echo "starting: ${processes[*]} (API on :$API_PORT; \`deploy/stack.sh ctl status\` shows them)"

# supervisord and its output listener write to this stdout through two open files: when it is
# a regular file (`make run > log`), both must append, or one overwrites the other's lines.
if [ -f /dev/stdout ]; then exec >>/dev/stdout; fi
if [ -f /dev/stderr ]; then exec 2>>/dev/stderr; fi

# supervisord runs as a child rather than by exec: on SIGHUP (the terminal closed) it would
# restart every process instead of stopping, so this shell turns SIGHUP, like SIGINT and
# SIGTERM, into a SIGTERM for it, and exits with supervisord's own status.
launcher="" signalled=""
stop() {
  signalled=1
  if [ -n "$launcher" ]; then kill -TERM "$launcher" 2>/dev/null || true; fi
}
trap stop INT TERM HUP
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--user root); fi  # instead of supervisord's warning
supervisord --nodaemon --configuration "$conf" "${as_root[@]}" &
launcher=$!
if [ -n "$signalled" ]; then stop; fi
while :; do
  signalled="" status=0
  wait "$launcher" || status=$?
  # A trapped signal ends `wait` early; then wait again for supervisord's own exit.
  if [ -z "$signalled" ]; then break; fi
done
exit "$status"
