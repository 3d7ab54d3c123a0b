"""The native launcher's supervisord event listener (deploy/supervisor_events.py) under a real
supervisord: every output line is printed once, whole, prefixed with its program's name, and
what a killed program leaves in its process group is stopped."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from core.settings import PROJECT_ROOT
from tests import procs

# Prints a line in two writes, then starts a child in its own process group and waits.
SCRIPT = """
echo "first line"
printf 'half a '; sleep 0.5; echo line
sleep 300 &
echo "child $!"
wait
"""


def test_listener_prefixes_whole_lines_and_stops_what_a_killed_program_left(tmp_path):
    supervisord = Path(sys.executable).with_name("supervisord")
    assert supervisord.exists(), "supervisor is not installed in this venv"
    script = tmp_path / "talker.sh"
    script.write_text(SCRIPT)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"""
[supervisord]
nodaemon=true
logfile={tmp_path / "supervisord.log"}
pidfile={tmp_path / "supervisord.pid"}

[eventlistener:output]
command={sys.executable} {PROJECT_ROOT / "deploy" / "supervisor_events.py"}
events=PROCESS_LOG,PROCESS_STATE_EXITED,PROCESS_STATE_BACKOFF
autorestart=true
stderr_logfile=/dev/stdout
stderr_logfile_maxbytes=0

[program:talker]
command={shutil.which("bash")} {script}
autorestart=false
startsecs=1
redirect_stderr=true
stdout_logfile=NONE
stdout_events_enabled=true
"""
    )
    log = tmp_path / "out.log"
    # supervisord and the listener write to this file through two open files: both must append
    # (deploy/stack.sh makes sure of it for a file it is given).
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(supervisord), "-c", str(conf)],
            env={"PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = procs.wait_until(
            lambda: "child " in (t := log.read_text()) and t, 60, "the talker's output"
        )
        child = int(re.search(r"talker     \| child (\d+)$", text, re.M).group(1))
        orphan = psutil.Process(child)
        talker = psutil.Process(orphan.ppid())
        assert talker.cmdline()[-1] == str(script)

        talker.kill()
        # Without the listener the orphan would sleep on for five minutes.
        procs.wait_until(
            lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE,
            60,
            "the killed program's child to be stopped",
        )
    finally:
        code = procs.stop(proc, signal.SIGTERM, timeout=60)
    text = log.read_text()
    lines = re.findall(r"^\d\d:\d\d:\d\d talker     \| (.*)$", text, re.M)
    assert lines == ["first line", "half a line", f"child {child}"], text
    assert code == 0, text
