#!/usr/bin/env bash
# Verify a deployed stack: health, a prediction, a retrain polled to success, Prometheus targets.
#   deploy/verify.sh API_URL [PROMETHEUS_URL]     (API_ADMIN_TOKEN from the environment or .env)
set -euo pipefail
api="${1:-http://127.0.0.1:8000}"
prom="${2:-}"
token="${API_ADMIN_TOKEN:-$(grep -E '^API_ADMIN_TOKEN=' .env | tail -1 | cut -d= -f2-)}"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "health:"; curl -fsS "$api/health" | json 'd["status"]'
echo "prediction:"
curl -fsS -X POST "$api/predict/iris" -H 'Content-Type: application/json' \
  -d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}' \
  | json 'd["prediction"], d["model"]["version"]'
echo "retrain:"
job=$(curl -fsS -X POST "$api/retrain" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"model": "iris", "force": true}' | json 'd["job_id"]')
for _ in $(seq 1 120); do
  state=$(curl -fsS "$api/jobs/$job" | json 'd["state"]')
  echo "  job $job: $state"
  case "$state" in succeeded) break ;; failed) exit 1 ;; esac
  sleep 5
done
[ "$state" = succeeded ] || { echo "retrain did not finish"; exit 1; }
if [ -n "$prom" ]; then
  echo "prometheus targets:"
  for _ in $(seq 1 30); do
    down=$(curl -fsS "$prom/api/v1/targets" | json 'sum(t["health"] != "up" for t in d["data"]["activeTargets"])')
    [ "$down" = 0 ] && break
    sleep 2
  done
  [ "$down" = 0 ] || { echo "some Prometheus targets are not up"; exit 1; }
  echo "  all up"
fi
echo "verified"
