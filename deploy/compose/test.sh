#!/usr/bin/env bash
# The compose test (`make compose-test`): the full stack built from this checkout, brought up
# and driven from the host by tests/compose.
#   COMPOSE_IMAGES=local     (default) start a Docker engine if none answers (installing it on
#                            Debian when missing) and point the compose file at local stand-ins
#                            built from Debian's packages: for machines that cannot pull
#   COMPOSE_IMAGES=official  the compose file's own pinned images, pulled (GitHub's deploy job)
# An engine started here is stopped (with its containers) when the test ends, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
images="${COMPOSE_IMAGES:-local}"
case "$images" in
  local)
    bash deploy/compose/engine.sh start
    trap 'bash deploy/compose/engine.sh stop' EXIT
    stand_ins="$(bash deploy/compose/images.sh)"
    set -a
    eval "$stand_ins"
    set +a
    ;;
  official) ;;
  *) echo "COMPOSE_IMAGES is local or official, not $images" >&2; exit 2 ;;
esac
export COMPOSE_TEST=1 DOCKER_BUILDKIT=0
GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
export GIT_COMMIT
.venv/bin/pytest tests/compose -p no:cacheprovider -o addopts="" -ra "$@"
