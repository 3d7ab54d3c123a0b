"""Fault-injection test helpers: traffic loops, failure kinds, registry and metric checks."""

from __future__ import annotations

import http.client
import itertools
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import requests

from core import registry
from core.specs import ALIAS_CHAMPION, ALIAS_PREVIOUS, MODEL_SPECS

MODELS = ("iris", "housing")


@dataclass(frozen=True)
class Answer:
    """One answered prediction request."""

    request_id: str
    model: str
    status: int
    version: str | None


class Traffic(threading.Thread):
    """Posts single-record predictions (iris and housing in turn) until stopped.

    Every request carries its own X-Request-ID, so answers can be matched to prediction-log rows.
    Answers and transport failures are kept apart: a failure never counts as an answer.
    """

    _ids = itertools.count()

    def __init__(self, base_url: str, prefix: str, timeout: float = 10.0) -> None:
        super().__init__(daemon=True, name=f"traffic-{prefix}")
        self.base_url = base_url
        self.prefix = prefix
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.failures: list[tuple[str, str, str]] = []  # (request id, kind, repr)
        self.stop = threading.Event()
        self.stop_on_refused = False

    def run(self) -> None:
        # A new connection per request, as gunicorn's sync workers close after every answer.
        models = itertools.cycle(MODELS)
        while not self.stop.is_set():
            model = next(models)
            rid = f"{self.prefix}-{next(self._ids)}"
            try:
                response = requests.post(
                    f"{self.base_url}/predict/{model}",
                    json=MODEL_SPECS[model].example_row(),
                    headers={"X-Request-ID": rid},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                kind = failure_kind(exc)
                self.failures.append((rid, kind, repr(exc)))
                if kind == "refused" and self.stop_on_refused:
                    return
                continue
            try:
                version = response.json().get("model", {}).get("version")
            except ValueError:
                version = None
            self.answers.append(Answer(rid, model, response.status_code, version))

    def statuses(self) -> set[int]:
        """Every status code answered so far."""
        return {answer.status for answer in self.answers}

    def halt(self, timeout: float = 15.0) -> None:
        """Stop the loop and wait for the request in flight."""
        self.stop.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, its causes, contexts and wrapped reasons (requests wraps urllib3 wraps OSError)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return seen


def failure_kind(exc: BaseException) -> str:
    """'refused' (nothing listens: the request never reached a server), 'reset', or 'other'."""
    chain = _chain(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused"
    reset = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
    if any(isinstance(e, reset) for e in chain):
        return "reset"
    return "other"


def assert_aliases_consistent(model: str) -> None:
    """Exactly one @champion naming a registered version; @previous, if any, is another one."""
    name = MODEL_SPECS[model].registered_name
    versions = registry.list_versions(name)
    champions = [v for v in versions if ALIAS_CHAMPION in v.aliases]
    assert len(champions) == 1, [(v.version, v.aliases) for v in versions]
    champion = registry.champion(name)
    assert champion is not None and champion.version == champions[0].version
    assert registry.get_version(name, champion.version).version == champion.version
    previous = registry.get_alias(name, ALIAS_PREVIOUS)
    if previous is not None:
        assert previous.version != champion.version or len(versions) == 1, (previous, champion)


def metric_sample(text: str, key: str) -> float:
    """The value of one exact sample (name with labels) in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
conn.execute("ROLLBACK")
"""


class SqliteLocker:
    """Another process holding an EXCLUSIVE transaction on a SQLite file (no reader gets in)."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.strip() == "locked", f"locker did not lock {path}: {line!r}"

    def release(self) -> None:
        """End the transaction and the process."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
