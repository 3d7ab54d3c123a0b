"""supervisord event listener of the native launcher (deploy/supervisord.conf).

Prints every role's output on the launcher's stdout, each line prefixed with the time and the
role's name as honcho did, and when a role's main process dies, sends SIGTERM to what it left in
its process group (supervisord gives each role its own): gunicorn workers whose master was
killed would hold the API port for up to half GUNICORN_TIMEOUT, and a retrain's `dvc repro` would
run on unsupervised.

Speaks supervisor's event listener protocol on stdin/stdout; prints on stderr, which
supervisord copies to its own stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from supervisor import childutils

NAME_WIDTH = 10  # "prometheus", the longest role name: the `|` columns line up
EXITS = ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF")


class Output:
    """Whole lines of each role's output, prefixed; a partial line waits for its end."""

    def __init__(self, out) -> None:
        self.out = out
        self.partial: dict[str, str] = {}

    def write(self, name: str, data: str) -> None:
        """Print the complete lines in data; keep what follows the last newline."""
        lines = (self.partial.pop(name, "") + data).split("\n")
        if lines[-1]:
            self.partial[name] = lines[-1]
        self.emit(name, lines[:-1])

    def flush(self, name: str) -> None:
        """Print a role's unterminated last line (it exited)."""
        if name in self.partial:
            self.emit(name, [self.partial.pop(name)])

    def emit(self, name: str, lines: list[str]) -> None:
        if not lines:
            return
        prefix = f"{time.strftime('%H:%M:%S')} {name:<{NAME_WIDTH}} | "
        self.out.write("".join(f"{prefix}{line.rstrip(chr(13))}\n" for line in lines))
        self.out.flush()


def stop_leftovers(pgid: int) -> None:
    """SIGTERM every process left in a dead role's process group (its id is the role's pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)


def main() -> None:
    """Handle events until supervisord stops this listener (SIGTERM: a clean exit)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # `len` in the protocol counts characters of the UTF-8 text supervisord sends.
    sys.stdin.reconfigure(encoding="utf-8")
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stderr.reconfigure(encoding="utf-8", errors="replace")
    output = Output(sys.stderr)
    # A BACKOFF event carries no pid: the one its last output came from (this incarnation's).
    last_pid: dict[str, int] = {}
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        if event.startswith("PROCESS_LOG"):
            meta, data = childutils.eventdata(payload)
            last_pid[meta["processname"]] = int(meta["pid"])
            output.write(meta["processname"], data)
        elif event in EXITS:
            meta = childutils.get_headers(payload)
            name = meta["processname"]
            output.flush(name)
            pid = int(meta.get("pid") or last_pid.get(name, 0))
            last_pid.pop(name, None)
            if pid > 1:
                stop_leftovers(pid)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
