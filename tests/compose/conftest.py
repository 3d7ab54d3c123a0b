"""The compose test needs a Docker engine and about ten minutes: `make compose-test` runs it
(deploy/compose/test.sh sets COMPOSE_TEST=1); `make test` does not collect it."""

from __future__ import annotations

import os

import pytest

if os.environ.get("COMPOSE_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    """Seconds per phase of the compose test, in the order they ran."""
    if not TIMINGS:
        return
    terminalreporter.section("compose test phases")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
    terminalreporter.write_line(f"{sum(TIMINGS.values()):7.1f} s  total")


LOGS: list = []  # the running stack's `docker compose logs`, for failure reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing compose test reports the last lines of every container's log."""
    report = yield
    if report.when == "call" and report.failed and LOGS:
        report.sections.append(("docker compose logs", LOGS[0]()))
    return report
