"""Process metrics of the whole API server (gunicorn master + workers), summed.

prometheus_client's multiprocess mode drops the per-process collector, so without this the
scrape would show no memory or CPU at all; summing the tree gives one honest figure whichever
worker answers the scrape."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest


def server_processes() -> list[psutil.Process]:
    """This process, or under gunicorn the master and all its workers."""
    me = psutil.Process()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return [me]
    try:
        master = me.parent()
        if master is None or "gunicorn" not in " ".join(master.cmdline()):
            return [me]
        return [master, *master.children()]
    except psutil.Error:
        return [me]


class ServerProcessCollector:
    """Memory, CPU, open files and worker count of the server's process tree."""

    def collect(self) -> Iterator:
        """Yield the metric families (called on every scrape)."""
        rss = cpu = fds = 0.0
        procs = server_processes()
        alive = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    fds += proc.num_fds()
                alive += 1
            except psutil.Error:
                continue  # a worker that exited between listing and reading
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the API server processes.", rss
        )
        yield CounterMetricFamily(
            "process_cpu_seconds", "CPU time of the API server processes.", value=cpu
        )
        yield GaugeMetricFamily("process_open_fds", "Open file descriptors of the server.", fds)
        yield GaugeMetricFamily(
            "api_server_processes", "Processes of the API server (master and workers).", alive
        )


_registry: CollectorRegistry | None = None


def exposition(openmetrics: bool = False) -> bytes:
    """The server process metrics, in the Prometheus text or OpenMetrics format (no # EOF)."""
    global _registry
    if _registry is None:
        _registry = CollectorRegistry()
        _registry.register(ServerProcessCollector())
    if not openmetrics:
        return generate_latest(_registry)
    return openmetrics_latest(_registry).removesuffix(b"# EOF\n")
