#!/usr/bin/env bash
# Local stand-ins for the images docker-compose.yml pulls, for a machine whose Docker cannot reach
# a registry: a Debian bookworm base made by mmdebstrap from Debian's packages and imported, the
# app's python base, and redis, postgres, nginx and prometheus, each from Debian's packages and
# honouring the part of the official image's interface the compose file uses (standins/*).
# Prints the variables that point the compose file at them:
#   eval "$(deploy/compose/images.sh)"
# The base is made once (REBUILD_BASE=1 makes it again); the rest reuses Docker's build cache.
set -euo pipefail
cd "$(dirname "$0")"
export DOCKER_BUILDKIT=0  # no buildx here; BuildKit would also try to pull its frontend
repo=prediction-service-local
debian="$repo/debian:bookworm"

if [ "${REBUILD_BASE:-0}" = 1 ] || ! docker image inspect "$debian" >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "images: building $debian with mmdebstrap" >&2
  # The machine's own CA certificates go in too: pip inside image builds must trust whatever
  # this machine trusts (a TLS-inspecting egress proxy, say). apt keeps no package files or
  # caches, as in Debian's official images (their /etc/apt/apt.conf.d/docker-clean).
  # shellcheck disable=SC2016  # "$1" in a hook is mmdebstrap's root directory, expanded there
  mmdebstrap --variant=apt --include=ca-certificates --format=tar \
    --customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share/' \
    --customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null' \
    --customize-hook='cat > "$1/etc/apt/apt.conf.d/docker-clean" <<APT
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT
rm -f "$1"/var/cache/apt/*.bin' \
    bookworm "$tmp/rootfs.tar" >"$tmp/mmdebstrap.log" 2>&1 \
    || { tail -20 "$tmp/mmdebstrap.log" >&2; exit 1; }
  docker import --change 'CMD ["bash"]' "$tmp/rootfs.tar" "$debian" >/dev/null
fi

log="$(mktemp)"
for name in python redis postgres nginx prometheus; do
  echo "images: building $repo/$name:bookworm" >&2
  docker build --build-arg "DEBIAN_IMAGE=$debian" --tag "$repo/$name:bookworm" \
    "standins/$name" >"$log" 2>&1 || { tail -30 "$log" >&2; rm -f "$log"; exit 1; }
done
rm -f "$log"

cat <<VARS
BASE_IMAGE=$repo/python:bookworm
REDIS_IMAGE=$repo/redis:bookworm
POSTGRES_IMAGE=$repo/postgres:bookworm
NGINX_IMAGE=$repo/nginx:bookworm
PROMETHEUS_IMAGE=$repo/prometheus:bookworm
VARS
