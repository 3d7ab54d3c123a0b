#!/bin/sh
# Debian builds prometheus to keep its data in /var/lib/prometheus/metrics2; the official image's
# default is ./data in its working directory, /prometheus (the volume). The same here, unless the
# command line says otherwise.
case " $* " in
  *" --storage.tsdb.path"*) ;;
  *) set -- --storage.tsdb.path=data/ "$@" ;;
esac
exec /usr/bin/prometheus "$@"
