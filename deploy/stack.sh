#!/usr/bin/env bash
# Native launcher: the compose stack's processes on one machine, under honcho.
#   api, worker (retrains), monitor (drift and live-quality checks, retention) and beat (their
#   schedule) always; redis when nothing answers at REDIS_URL (and redis-server is installed);
#   prometheus when installed (STACK_PROMETHEUS=off to skip). Ctrl-C / SIGTERM stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export STATE_DIR="${STATE_DIR:-$PWD/var}"
export API_PORT="${API_PORT:-8000}" WORKER_METRICS_PORT="${WORKER_METRICS_PORT:-9101}"
export MONITOR_METRICS_PORT="${MONITOR_METRICS_PORT:-9102}"
export REDIS_URL="${REDIS_URL:-redis://localhost:6379/0}"
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1
mkdir -p "$STATE_DIR"

# Create the MLflow store once, before several processes race on its first migration.
python -c "from core import registry; registry.ensure_store()"

processes=(api worker monitor beat)
redis_up() { python - "$REDIS_URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}
if ! redis_up; then
  if command -v redis-server >/dev/null; then
    export REDIS_PORT
    REDIS_PORT="$(python -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)' "$REDIS_URL")"
    mkdir -p "$STATE_DIR/redis"
    processes=(redis "${processes[@]}")
  else
    echo "warning: nothing answers at $REDIS_URL and redis-server is not installed" >&2
  fi
fi
if command -v prometheus >/dev/null && [ "${STACK_PROMETHEUS:-auto}" != "off" ]; then
  python monitoring/render_config.py --api "127.0.0.1:$API_PORT" \
    --worker "127.0.0.1:$WORKER_METRICS_PORT" --monitor "127.0.0.1:$MONITOR_METRICS_PORT" \
    > "$STATE_DIR/prometheus.yml"
  processes+=(prometheus)
fi
echo "starting: ${processes[*]} (API on :$API_PORT)"
exec honcho -f deploy/Procfile -d . start "${processes[@]}"
