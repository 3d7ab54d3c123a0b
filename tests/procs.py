"""Helpers for tests that run real processes: free ports, start/stop, polling with deadlines."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from core.settings import PROJECT_ROOT

# Deadline for a process to come up (imports, database migrations, model loads): generous, as a
# loaded 2-core machine can be ten times slower than a quiet one; a wait ends as soon as it is up.
START_SECONDS = 300


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT):
    """Start cmd in its own process group, output to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Signal the process group and wait; SIGKILL when it does not stop in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def tail(proc: subprocess.Popen, lines: int = 40) -> str:
    """Last lines of a started process's log, for assertion messages."""
    path = getattr(proc, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll check() until it returns something truthy; fail with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last_error!r})")


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until url answers 200; fail early with its log if proc exits."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}):\n{tail(proc)}")
        return requests.get(url, timeout=2).status_code == 200

    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except AssertionError:
            raise
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            log = tail(proc) if proc is not None else ""
            raise AssertionError(f"{url} not ready after {timeout:.0f}s\n{log}")
        time.sleep(0.2)


def wait_all_workers_ready(base_url: str, workers: int, timeout: float) -> None:
    """Readiness is per gunicorn worker: poll /health until `workers` distinct pids said ok."""
    ready: set[int] = set()

    def every_worker_ready() -> bool:
        checks = requests.get(f"{base_url}/health", timeout=2).json()["checks"]
        if all(m["status"] == "ok" for m in checks["models"].values()):
            ready.add(checks["process"]["pid"])
        return len(ready) >= workers

    wait_until(every_worker_ready, timeout, f"{workers} workers ready", interval=0.05)


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set env in os.environ (for this process and its children); restore it afterwards."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
