#!/bin/sh
# The official redis image's entry point, for Debian's redis-server.
set -e
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
  shift
  # The official image builds redis with protected mode off: clients on the Docker network are
  # the point. Given first, so a --protected-mode later on the command line still wins.
  if [ "${1%.conf}" != "${1:-}" ]; then
    conf=$1
    shift
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec gosu redis "$@"
  fi
fi
exec "$@"
