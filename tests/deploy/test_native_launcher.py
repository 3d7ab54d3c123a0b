"""`make stack` from a clean clone: the native launcher (deploy/stack.sh, supervisord) runs redis,
api, worker, monitor, beat and Prometheus, each line of output prefixed with its name. Each role
killed with SIGKILL comes back while the others keep their pids and keep serving (after the
worker's, a forced retrain registers a new candidate of each model); a role that cannot start
is retried after growing delays; SIGTERM stops everything, even mid-retrain: make exits 0,
every port is closed and no process is left.

The tests share one launcher (module scope) and run in file order; each also works alone.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import redis
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from supervisor import childutils

from core.settings import PROJECT_ROOT
from tests import procs

TOKEN = "native-launcher-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
IRIS_ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
ROLES = ("redis", "api", "worker", "monitor", "beat", "prometheus")
PORTS = ("api", "worker", "monitor", "redis", "prometheus")
MONITOR_INTERVAL = 5  # seconds between the monitor checks beat queues (default 300)
# Generous deadlines: a loaded 2-core machine where other suites run at the same time.
START_TIMEOUT = 300
RESTART_TIMEOUT = 180
HEALTHY_TIMEOUT = 300
RETRAIN_TIMEOUT = 900
STOP_TIMEOUT = 180

# A retrain on a loaded machine can take minutes: more than the suite's 600 s per test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass
class Stack:
    """A running `make stack` and how to reach it."""

    make: subprocess.Popen
    state: Path
    ports: dict[str, int]
    log: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def supervisor(self):
        """supervisord's XML-RPC interface, through its socket (what supervisorctl uses)."""
        url = f"unix://{self.state / 'supervisor.sock'}"
        return childutils.getRPCInterface({"SUPERVISOR_SERVER_URL": url}).supervisor

    def roles(self) -> dict[str, dict]:
        """supervisord's view of each program: statename, pid, ..."""
        return {info["name"]: info for info in self.supervisor().getAllProcessInfo()}

    def running(self) -> dict[str, int]:
        """The pid of each role supervisord reports RUNNING."""
        return {
            name: info["pid"]
            for name, info in self.roles().items()
            if name in ROLES and info["statename"] == "RUNNING"
        }

    def launcher(self) -> psutil.Process:
        """deploy/stack.sh, the process `make stack` runs: a SIGTERM to it is a clean stop."""
        for child in psutil.Process(self.make.pid).children():
            if "deploy/stack.sh" in child.cmdline():
                return child
        raise AssertionError(f"no deploy/stack.sh under make\n{procs.tail(self.make)}")

    def tree(self) -> list[psutil.Process]:
        """make and every process below it."""
        with contextlib.suppress(psutil.NoSuchProcess):
            make = psutil.Process(self.make.pid)
            return [make, *make.children(recursive=True)]
        return []

    def ours(self) -> list[psutil.Process]:
        """Every live process on this machine started for this stack (it has our STATE_DIR)."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("STATE_DIR") == str(self.state) and alive(proc):
                    found.append(proc)
        return found

    def read_log(self, start: int = 0) -> str:
        return self.log.read_bytes()[start:].decode(errors="replace")

    def stop(self) -> None:
        """Teardown: SIGTERM to the launcher; whatever is still alive after that is killed."""
        if self.make.poll() is None:
            tree = self.tree()
            with contextlib.suppress(psutil.Error, AssertionError):
                self.launcher().terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.make.wait(STOP_TIMEOUT)
            procs.stop(self.make, signal.SIGKILL, timeout=10)
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        for proc in self.ours():  # a failed test must not leave a stack behind
            with contextlib.suppress(psutil.Error):
                proc.kill()


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def stack(trained_registry, tmp_path_factory) -> Iterator[Stack]:
    """`make stack` in a fresh clone, with its own Redis, ports and copy of the registry."""
    assert shutil.which("redis-server"), "redis-server is needed for the launcher's own Redis"
    assert shutil.which("prometheus"), "Prometheus is needed (.ci/run installs it)"
    root = tmp_path_factory.mktemp("launcher")
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    # The pinned requirements are already installed in this venv: share it instead of
    # spending a minute reinstalling the same wheels.
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    state = (root / "state").resolve()
    state.mkdir()
    shutil.copy2(trained_registry.state_dir / "mlflow.db", state / "mlflow.db")
    workspace = root / "workspace"
    shutil.copytree(trained_registry.workspace, workspace, symlinks=True)
    # The monitor checks every few seconds here (its runs show that beat and the monitor work),
    # and the traffic below repeats one row, which is drift: it must not retrain on its own.
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    for settings in params["monitor"].values():
        for kind in ("drift", "quality"):
            settings[f"{kind}_min_rows"] = settings[f"{kind}_window_rows"] = 10**6
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ports = {name: procs.free_port() for name in PORTS}
    registry_uri = f"sqlite:///{state / 'mlflow.db'}"
    env = {
        **trained_registry.env,
        "STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": registry_uri,
        "MLFLOW_REGISTRY_URI": registry_uri,
        "DATABASE_URL": f"sqlite:///{state / 'app.db'}",
        # Nothing answers there: the launcher must start its own redis-server.
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "API_PORT": str(ports["api"]),
        "WORKER_METRICS_PORT": str(ports["worker"]),
        "MONITOR_METRICS_PORT": str(ports["monitor"]),
        "PROMETHEUS_PORT": str(ports["prometheus"]),
        "PROMETHEUS_MULTIPROC_DIR": str(root / "api-metrics"),
        "API_ADMIN_TOKEN": TOKEN,
        "PIPELINE_WORKSPACE": str(workspace),
        "MODEL_REFRESH_SECONDS": "1",
        "MONITOR_INTERVAL_SECONDS": str(MONITOR_INTERVAL),
        "PYTHONPATH": str(clone),
    }
    make = procs.start(["make", "stack"], env, root / "stack.log", cwd=clone)
    running = Stack(make, state, ports, root / "stack.log")
    try:
        procs.wait_http(f"{running.api}/health/ready", START_TIMEOUT, make)
        procs.wait_all_workers_ready(running.api, 2, START_TIMEOUT)
        procs.wait_until(
            lambda: set(running.running()) == set(ROLES), START_TIMEOUT, "every role RUNNING"
        )
        yield running
    finally:
        running.stop()


# -- what "serving" means for each role ----------------------------------------------------------


def predict_iris(api: str) -> None:
    r = requests.post(f"{api}/predict/iris", json=IRIS_ROW, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == "virginica"


def versions(api: str, model: str) -> set[str]:
    r = requests.get(f"{api}/models/{model}", timeout=10)
    assert r.status_code == 200, r.text
    return {v["version"] for v in r.json()["versions"]}


def retrain(stack: Stack, model: str) -> dict:
    """A forced retrain of model ("all": both), polled until it ends; the finished job."""
    r = requests.post(
        f"{stack.api}/retrain", json={"model": model, "force": True}, headers=ADMIN, timeout=10
    )
    assert r.status_code == 202, r.text
    url = f"{stack.api}{r.headers['Location']}"
    return procs.wait_until(
        lambda: (
            (j := requests.get(url, timeout=5).json())["state"] in ("succeeded", "failed") and j
        ),
        RETRAIN_TIMEOUT,
        f"the retrain of {model} to finish",
        interval=1,
    )


def assert_new_candidates(job: dict, before: dict[str, set[str]]) -> None:
    assert job["state"] == "succeeded", job
    for model, known in before.items():
        candidate = job["result"][model]["candidate_version"]
        assert candidate is not None and candidate not in known, (model, known, job)


def prometheus_targets_up(stack: Stack) -> bool:
    url = f"http://127.0.0.1:{stack.ports['prometheus']}/api/v1/targets"
    targets = requests.get(url, timeout=5).json()["data"]["activeTargets"]
    return {t["labels"]["job"]: t["health"] for t in targets} == {
        "api": "up",
        "worker": "up",
        "monitor": "up",
    }


def monitor_checks(stack: Stack) -> float:
    """Monitor checks run to success, from the monitor worker's metrics endpoint."""
    text = requests.get(f"http://127.0.0.1:{stack.ports['monitor']}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "monitor_runs_total"
        and sample.labels == {"task": "check", "outcome": "success"}
    )


def redis_back(stack: Stack, pid: int) -> None:
    client = redis.Redis(port=stack.ports["redis"], socket_timeout=2, socket_connect_timeout=2)
    procs.wait_until(
        lambda: client.info("server")["process_id"] == pid, HEALTHY_TIMEOUT, "the new redis"
    )
    procs.wait_until(
        lambda: (
            requests.get(f"{stack.api}/health", timeout=5).json()["checks"]["broker"]["status"]
            == "ok"
        ),
        HEALTHY_TIMEOUT,
        "the API to reach the new redis",
    )


def api_back(stack: Stack, pid: int) -> None:
    procs.wait_http(f"{stack.api}/health/ready", HEALTHY_TIMEOUT, stack.make)
    procs.wait_all_workers_ready(stack.api, 2, HEALTHY_TIMEOUT)
    worker = requests.get(f"{stack.api}/health", timeout=5).json()["checks"]["process"]["pid"]
    assert psutil.Process(worker).ppid() == pid, "the API answering is not the new master's"
    predict_iris(stack.api)


def worker_back(stack: Stack, pid: int) -> None:
    # A real retrain (forced: the data did not change) of both models, on the new worker.
    before = {model: versions(stack.api, model) for model in ("housing", "iris")}
    job = retrain(stack, "all")
    assert_new_candidates(job, before)
    for model in before:
        assert job["result"][model]["candidate_version"] in versions(stack.api, model)


def monitor_back(stack: Stack, pid: int) -> None:
    # Its metrics answer, then count a check it ran itself.
    [first] = procs.wait_until(
        lambda: [monitor_checks(stack)], HEALTHY_TIMEOUT, "the new monitor's metrics"
    )
    procs.wait_until(
        lambda: monitor_checks(stack) > first, HEALTHY_TIMEOUT, "a check by the new monitor"
    )


def beat_back(stack: Stack, pid: int) -> None:
    # Two more: one check the old beat queued may still have been running.
    first = monitor_checks(stack)
    procs.wait_until(
        lambda: monitor_checks(stack) >= first + 2, HEALTHY_TIMEOUT, "checks the new beat queued"
    )


def prometheus_back(stack: Stack, pid: int) -> None:
    # A new Prometheus knows no target until it has scraped it.
    procs.wait_until(
        lambda: prometheus_targets_up(stack), HEALTHY_TIMEOUT, "the new Prometheus to scrape"
    )


BACK: dict[str, Callable[[Stack, int], None]] = {
    "redis": redis_back,
    "api": api_back,
    "worker": worker_back,
    "monitor": monitor_back,
    "beat": beat_back,
    "prometheus": prometheus_back,
}


class Traffic(threading.Thread):
    """Iris predictions one after the other; counts answers and failures per phase."""

    def __init__(self, api: str) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.phase = "start"
        self.answered: Counter[str] = Counter()
        self.failures: defaultdict[str, list] = defaultdict(list)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            phase = self.phase
            try:
                r = requests.post(f"{self.api}/predict/iris", json=IRIS_ROW, timeout=10)
                failure = None if r.status_code == 200 else r.status_code
            except requests.RequestException as exc:
                failure = repr(exc)
            if failure is None:
                self.answered[phase] += 1
            else:
                self.failures[phase].append(failure)
            self.done.wait(0.1)  # pacing, so the loaded machine still has room for the rest


# -- the tests -----------------------------------------------------------------------------------


def test_make_stack_serves_from_a_clean_clone(stack):
    health = requests.get(f"{stack.api}/health", timeout=5).json()
    assert health["status"] == "ok", health
    predict_iris(stack.api)
    log = stack.read_log()
    for role in ROLES:  # one terminal: each line says which role wrote it
        assert re.search(rf"^\d\d:\d\d:\d\d {role:<10} \| \S", log, re.M), f"{role}?\n{log}"
    procs.wait_until(
        lambda: prometheus_targets_up(stack), HEALTHY_TIMEOUT, "Prometheus to scrape all three"
    )


def test_each_role_killed_comes_back_while_the_others_keep_serving(stack):
    traffic = Traffic(stack.api)
    traffic.start()
    figures = {}
    try:
        for role in ROLES:
            traffic.phase = role
            before = stack.running()
            assert set(before) == set(ROLES), stack.roles()
            killed = psutil.Process(before[role])
            # gunicorn workers, the celery pool process: they must not outlive their parent.
            left_behind = killed.children(recursive=True)
            started = time.monotonic()
            killed.kill()

            def restarted(role=role, old=killed.pid) -> int | None:
                info = stack.roles()[role]
                if info["statename"] in ("STARTING", "RUNNING") and info["pid"] not in (0, old):
                    return info["pid"]
                return None

            new = procs.wait_until(restarted, RESTART_TIMEOUT, f"supervisord to restart {role}")
            BACK[role](stack, new)
            figures[role] = round(time.monotonic() - started, 1)
            # The same new pid, RUNNING (no crash loop); every other role kept its pid.
            procs.wait_until(
                lambda role=role: role in stack.running(), RESTART_TIMEOUT, f"{role} RUNNING"
            )
            assert stack.running() == {**before, role: new}, (role, before, stack.roles())
            procs.wait_until(
                lambda procs_=[killed, *left_behind]: not any(alive(p) for p in procs_),
                RESTART_TIMEOUT,
                f"what the killed {role} left behind to exit",
            )
        traffic.phase = "end"
        procs.wait_until(lambda: traffic.answered["end"], HEALTHY_TIMEOUT, "a last prediction")
    finally:
        traffic.done.set()
        traffic.join(30)
    print(f"\nSIGKILL -> role serving again (s): {figures}")
    print(f"predictions answered per phase: {dict(traffic.answered)}")
    for role in ROLES:
        if role != "api":  # only the API's own restart may cost predictions
            assert not traffic.failures[role], (role, traffic.failures[role][:5])
            assert traffic.answered[role] > 0, (role, dict(traffic.answered))


def test_a_role_that_cannot_start_is_retried_after_growing_delays(stack):
    before = stack.running()
    supervisor = stack.supervisor()
    assert supervisor.stopProcess("prometheus", True)
    offset = stack.log.stat().st_size
    # Its port taken, Prometheus exits at once: each failed start is retried a second later
    # than the one before, and the other roles are left alone.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", stack.ports["prometheus"]))
        squatter.listen()
        assert supervisor.startProcess("prometheus", False)
        spawned = procs.wait_until(
            lambda: len(times := spawn_times(stack.read_log(offset), "prometheus")) >= 4 and times,
            RESTART_TIMEOUT,
            "four attempts to start prometheus",
        )
        assert stack.roles()["prometheus"]["statename"] in ("BACKOFF", "STARTING")
    gaps = [later - earlier for earlier, later in itertools.pairwise(spawned)]
    print(f"\nseconds between attempts to start prometheus: {[round(g, 1) for g in gaps]}")
    for retry, gap in enumerate(gaps, start=1):
        assert gap >= retry, gaps  # the n-th retry comes at least n seconds after its failure
    # The port free again, the next attempt stays up.
    new = procs.wait_until(
        lambda: stack.running().get("prometheus"), RESTART_TIMEOUT, "prometheus RUNNING again"
    )
    prometheus_back(stack, new)
    assert stack.running() == {**before, "prometheus": new}, stack.roles()


def spawn_times(log: str, role: str) -> list[float]:
    """When supervisord started role, from its log lines (local time, milliseconds)."""
    pattern = rf"^(\S+ \S+) INFO spawned: '{role}' with pid"
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp in re.findall(pattern, log, re.M)
    ]


def test_sigterm_stops_everything_cleanly_even_mid_retrain(stack):
    r = requests.post(
        f"{stack.api}/retrain", json={"model": "housing", "force": True}, headers=ADMIN, timeout=10
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def pipeline_running() -> list[psutil.Process]:
        return [p for p in stack.ours() if _environ(p).get("PIPELINE_RUN_ID") == job_id]

    procs.wait_until(
        pipeline_running, RETRAIN_TIMEOUT, "the retrain's `dvc repro` to run", interval=0.5
    )
    started = stack.tree() + stack.ours()
    offset = stack.log.stat().st_size
    began = time.monotonic()
    stack.launcher().send_signal(signal.SIGTERM)
    code = stack.make.wait(STOP_TIMEOUT)
    print(f"\nSIGTERM -> make exited {code} after {time.monotonic() - began:.1f} s")
    shutdown = stack.read_log(offset)
    assert code == 0, shutdown
    left = [p for p in {*started, *stack.ours()} if alive(p)]
    assert not left, f"processes left running: {left}\n{shutdown}"
    assert "with SIGKILL" not in shutdown, shutdown
    for role in ROLES:
        assert f"stopped: {role} (" in shutdown, shutdown
    still_open = {name: port for name, port in stack.ports.items() if accepts(port)}
    assert not still_open, f"ports still accepting connections: {still_open}"


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}
