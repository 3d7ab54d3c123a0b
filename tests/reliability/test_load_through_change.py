"""Load through a model change: wrk keeps both predict endpoints busy while housing is retrained,
promoted and rolled back, on real gunicorn (2 workers), Celery, Redis, MLflow and DVC.

Every answer must be a 2xx, and the housing versions the load sees must go old -> new -> old
with nothing else: no third version, no old answer once every worker serves the new one and
before the rollback is asked for, no new answer once every worker is back. load.lua records, per
wrk thread, runs of equal versions with the wall-clock times of their first and last answers;
the test compares them with the times it took its own steps.

Figures (req/s, latency percentiles, the version timeline) are printed: `pytest -s` or `-rP`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import jobs
from core.specs import HOUSING, IRIS
from tests import procs
from tests.api.conftest import ADMIN, Gunicorn, GunicornLauncher
from tests.conftest import TrainedRegistry
from tests.workers.conftest import RedisServer, WorkerProcess, private_state
from tests.workers.test_retrain_e2e import STRONGER, set_housing_params

pytestmark = pytest.mark.slow

LUA = Path(__file__).with_name("load.lua")
LOAD_SECONDS = 60  # issue 8: at least a minute of load, and around the whole change
# wrk's own end in the one-minute test, never reached unless something hangs: the test stops it
# once the change is over, however long a retrain takes on a loaded machine.
LOAD_LIMIT_SECONDS = 900
SOAK_SECONDS = 600
THREADS, CONNECTIONS = 2, 4
# Think time per connection in the one-minute test: the API runs at about half its capacity,
# so on a 2-core machine the retrain (about 25 CPU seconds, mostly one core) fits in the minute.
# The soak has time for slower retrains and sends back to back (0).
PAUSE_MS = 4
WRK_TIMEOUT_S = 2  # an answer slower than this counts as a socket error (timeout)
REFRESH_SECONDS = 1.0  # what GunicornLauncher configures
# Each worker swaps within one refresh plus a model load: how long the load may see both
# versions. About 1 s on a quiet machine (the README's figure, from bench/); the bound leaves
# room for a model load on a loaded 2-core machine and still catches a worker that never swaps
# or one that keeps answering with both versions.
SWAP_SECONDS = REFRESH_SECONDS + 8
# The retrain must succeed this long before the load ends: every worker swaps, answers come
# from the new version, the rollback converges and answers come from the old one again.
AFTER_RETRAIN_S = 10.0
RETRAIN_TIMEOUT_S = 600  # a housing retrain of the test profile on a loaded 2-core machine
HOLD_ROWS = 50  # answers wanted on a version before the next step, so every phase is seen
# wrk may read an answer just after the test confirmed a worker's swap that the worker computed
# just before it: the first moments of a settled phase still accept the version it replaced.
GRACE_S = 0.25
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Stack:
    """The running services and the workspace the retrain worker trains in."""

    server: Gunicorn
    worker: WorkerProcess
    workspace: Path
    root: Path


@pytest.fixture
def stack(trained_registry: TrainedRegistry, tmp_path: Path) -> Iterator[Stack]:
    """Private Redis, registry and workspace copies, one Celery worker, gunicorn with 2 workers."""
    env = private_state(trained_registry, tmp_path)
    workspace = tmp_path / "workspace"
    shutil.copytree(trained_registry.workspace, workspace, symlinks=True)
    set_housing_params(workspace, STRONGER)  # beats the session champion: the retrain promotes
    redis = RedisServer(tmp_path / "redis")
    worker = WorkerProcess({}, tmp_path)
    launcher = GunicornLauncher(tmp_path)
    try:
        redis.start()
        base = {**trained_registry.env, **env, "REDIS_URL": redis.url}
        worker.env = {
            **base,
            "PIPELINE_WORKSPACE": str(workspace),
            "WORKER_METRICS_PORT": "0",
            "WORKER_PROMETHEUS_DIR": str(tmp_path / "worker-metrics"),
            # One thread per math library, as the API workers have: an OpenMP team spinning
            # for cores the busy API workers hold burns about three times the CPU, and the
            # retrain no longer fits in the minute.
            **dict.fromkeys(THREAD_VARS, "1"),
        }
        worker.start()
        # Job records live in the database the worker writes: the API must read the same one.
        server = launcher.start(base, DATABASE_URL=env["DATABASE_URL"], REDIS_URL=redis.url)
        yield Stack(server, worker, workspace, tmp_path)
    finally:
        launcher.close()
        worker.close()
        redis.close()


@dataclass
class Load:
    """A running wrk and where its Lua script writes the report."""

    proc: Any
    report_path: Path
    started: float  # epoch seconds, comparable with load.lua's clock
    seconds: int
    pause_ms: int
    stopped: float = math.inf  # when the test stopped wrk before its own end

    @property
    def ends(self) -> float:
        """When wrk stops sending."""
        return min(self.started + self.seconds, self.stopped)


def start_load(server: Gunicorn, seconds: int, root: Path, pause_ms: int) -> Load:
    """Start wrk on both predict endpoints; pause_ms between a connection's requests."""
    report = root / "load-report.json"
    env = {
        **server.env,
        "LOAD_HOUSING_BODY": orjson.dumps(HOUSING.example_row()).decode(),
        "LOAD_IRIS_BODY": orjson.dumps(IRIS.example_row()).decode(),
        "LOAD_REPORT": str(report),
        "LOAD_PAUSE_MS": str(pause_ms),
    }
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    cmd += ["--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(LUA), server.base_url]
    started = time.time()
    return Load(procs.start(cmd, env, root / "wrk.log"), report, started, seconds, pause_ms)


def finish_load(load: Load) -> dict[str, Any]:
    """Wait for wrk to end and return its report."""
    load.proc.wait(timeout=max(1.0, load.ends + 30 - time.time()))
    output = procs.tail(load.proc, 60)
    assert load.proc.returncode == 0, f"wrk failed ({load.proc.returncode}):\n{output}"
    assert load.report_path.exists(), f"load.lua wrote no report:\n{output}"
    return json.loads(load.report_path.read_text(errors="replace"))


def stop_load(load: Load, not_before: float) -> dict[str, Any]:
    """Let the load run until not_before, then stop wrk and return its report (on SIGINT wrk
    stops sending and reports, as at the end of its duration)."""
    procs.wait_until(
        lambda: time.time() >= not_before or load.proc.poll() is not None,
        not_before - time.time() + 5,
        "the load's minimum duration",
        interval=0.2,
    )
    assert load.proc.poll() is None, f"wrk ended early:\n{procs.tail(load.proc)}"
    load.stopped = time.time()
    load.proc.send_signal(signal.SIGINT)
    return finish_load(load)


def predicted_rows(server: Gunicorn, model: str, version: str) -> float:
    """model_predictions_total of one version, summed over the gunicorn workers."""
    pattern = re.compile(r"^model_predictions_total\{([^}]*)\} (\S+)$")
    wanted = {f'model="{model}"', f'version="{version}"'}
    total = 0.0
    for line in server.get("/metrics").text.splitlines():
        match = pattern.match(line)
        if match and wanted <= set(match.group(1).split(",")):
            total += float(match.group(2))
    return total


def wait_for_answers(server: Gunicorn, load: Load, version: str, what: str) -> None:
    """Wait until the load got HOLD_ROWS more housing answers from version."""
    mark = predicted_rows(server, "housing", version)

    def answered() -> bool:
        if load.proc.poll() is not None:
            raise AssertionError(f"the load ended before {what}:\n{procs.tail(load.proc)}")
        return predicted_rows(server, "housing", version) >= mark + HOLD_ROWS

    procs.wait_until(answered, 15, what, interval=0.1)


def wait_serving(server: Gunicorn, version: str) -> float:
    """Wait until every gunicorn worker serves this housing version; returns the time."""

    def every_worker() -> bool:
        return set(server.versions_by_worker("housing", 10).values()) == {version}

    procs.wait_until(every_worker, SWAP_SECONDS + 3, f"every worker on v{version}")
    return time.time()


def finished_job(stack: Stack, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll GET /jobs/<id> until the job is final."""

    def done() -> dict[str, Any] | None:
        body = stack.server.get(f"/jobs/{job_id}").json()
        return body if body["state"] in jobs.FINAL_STATES else None

    try:
        return procs.wait_until(done, timeout, f"job {job_id} to finish", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{stack.worker.log_tail()}") from None


@dataclass
class Cycle:
    """One retrain -> promotion -> rollback, with the epoch times of the test's steps."""

    old: str
    new: str = ""
    retrain_posted: float = 0.0
    job_done: float = 0.0
    all_new: float = 0.0
    rollback_posted: float = 0.0
    all_old: float = 0.0
    done: float = 0.0
    job: dict[str, Any] = field(default_factory=dict)


def change_and_roll_back(stack: Stack, load: Load, old: str) -> Cycle:
    """Retrain housing into a promoted version, wait for it everywhere, roll back, wait again."""
    server, cycle = stack.server, Cycle(old)
    cycle.retrain_posted = time.time()
    response = server.post("/retrain", json={"model": "housing"}, headers=ADMIN)
    assert response.status_code == 202, response.text
    timeout = min(load.ends - AFTER_RETRAIN_S - time.time(), RETRAIN_TIMEOUT_S)
    cycle.job = finished_job(stack, response.json()["job_id"], timeout)
    cycle.job_done = time.time()
    assert cycle.job["state"] == "succeeded", cycle.job
    result = cycle.job["result"]["housing"]
    assert result["promoted"] is True, result
    cycle.new = str(result["candidate_version"])
    assert cycle.new != old
    cycle.all_new = wait_serving(server, cycle.new)
    wait_for_answers(server, load, cycle.new, f"answers from v{cycle.new}")

    cycle.rollback_posted = time.time()
    response = server.post("/models/housing/rollback", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["champion"]["version"] == old, response.json()
    cycle.all_old = wait_serving(server, old)
    wait_for_answers(server, load, old, f"answers from v{old} after the rollback")
    cycle.done = time.time()
    return cycle


@dataclass(frozen=True)
class Segment:
    """Consecutive answers of one wrk thread from one version of a model."""

    thread: int
    version: str
    first: float  # epoch seconds
    last: float
    count: int


def segments(report: dict[str, Any], model: str) -> list[Segment]:
    """One model's segments of every thread, by time of their first answer."""
    found = [
        Segment(t["id"], s["version"], s["first_ms"] / 1000, s["last_ms"] / 1000, s["count"])
        for t in report["threads"]
        for s in t["segments"]
        if s["model"] == model
    ]
    return sorted(found, key=lambda s: s.first)


@dataclass
class Window:
    """A stretch of the run and the housing versions an answer in it may come from."""

    start: float
    end: float
    allowed: frozenset[str]
    label: str

    def overlaps(self, seg: Segment) -> bool:
        """Some of seg's answers may lie in this window."""
        return seg.first < self.end and seg.last >= self.start


def windows(cycles: list[Cycle]) -> list[Window]:
    """Settled phases accept one version; the swaps between them accept both sides."""
    out, start = [], -math.inf
    for c in cycles:
        old, new, both = frozenset({c.old}), frozenset({c.new}), frozenset({c.old, c.new})
        out.append(Window(start, c.retrain_posted, old, f"v{c.old} settled"))
        out.append(Window(c.retrain_posted, c.all_new + GRACE_S, both, f"retrain to v{c.new}"))
        out.append(Window(c.all_new + GRACE_S, c.rollback_posted, new, f"v{c.new} settled"))
        out.append(Window(c.rollback_posted, c.all_old + GRACE_S, both, f"rollback to v{c.old}"))
        start = c.all_old + GRACE_S
    out.append(Window(start, math.inf, frozenset({cycles[-1].old}), f"v{cycles[-1].old} settled"))
    return out


@dataclass
class Swaps:
    """How long the load saw both versions of one cycle (seconds)."""

    first_new: float  # epoch seconds of the first answer from the new version
    promotion: float  # first new answer .. last old answer before the rollback
    rollback: float  # rollback posted .. last new answer


def swaps(segs: list[Segment], cycle: Cycle) -> Swaps:
    """Measure one cycle's two switches from the answers themselves."""
    new = [s for s in segs if s.version == cycle.new]
    assert new, f"the load never saw v{cycle.new}"
    first_new = min(s.first for s in new)
    old_lasts = [
        s.last
        for s in segs
        if s.version == cycle.old and first_new <= s.last < cycle.rollback_posted
    ]
    promotion = max(old_lasts, default=first_new) - first_new
    rollback = max(s.last for s in new) - cycle.rollback_posted
    return Swaps(first_new, promotion, rollback)


def timeline_errors(segs: list[Segment], cycles: list[Cycle]) -> list[str]:
    """Versions outside their windows, settled phases nobody saw, switches that took too long."""
    errors = []
    plan = windows(cycles)
    for seg in segs:
        for win in plan:
            if win.overlaps(seg) and seg.version not in win.allowed:
                errors.append(
                    f"thread {seg.thread}: {seg.count} answers from v{seg.version} between "
                    f"{seg.first:.3f} and {seg.last:.3f}, in {win.label} "
                    f"({win.start:.3f}..{win.end:.3f})"
                )
    for win in plan:
        if len(win.allowed) == 1 and not any(
            win.overlaps(s) and s.version in win.allowed for s in segs
        ):
            errors.append(f"no answer seen while {win.label}")
    for c in cycles:
        seen = swaps(segs, c)
        if seen.first_new < c.retrain_posted:
            errors.append(f"v{c.new} answered before its retrain was posted")
        if seen.promotion > SWAP_SECONDS:
            errors.append(f"v{c.old} and v{c.new} both answered for {seen.promotion:.1f}s")
        if seen.rollback > SWAP_SECONDS:
            errors.append(f"v{c.new} still answered {seen.rollback:.1f}s after the rollback")
    return errors


def describe(report: dict[str, Any], load: Load, cycles: list[Cycle]) -> str:
    """Throughput, latency, and the housing version timeline relative to the start of the load."""
    seconds = report["duration_us"] / 1e6
    lat = {k: v / 1000 for k, v in report["latency_us"].items()}
    lines = [
        f"{report['requests']} requests in {seconds:.1f}s = {report['requests'] / seconds:.0f} "
        f"req/s (wrk {THREADS} threads, {CONNECTIONS} connections, {load.pause_ms} ms pause, "
        f"housing and iris alternating; 2 gunicorn workers); latency p50 {lat['p50']:.1f} ms, p90 "
        f"{lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
    ]
    housing = segments(report, "housing")

    def at(t: float) -> str:
        return f"{t - load.started:.2f}s"

    for n, c in enumerate(cycles, 1):
        seen = swaps(housing, c)
        lines.append(
            f"cycle {n}: v{c.old} until retrain posted at {at(c.retrain_posted)}; job succeeded "
            f"after {c.job_done - c.retrain_posted:.1f}s; first v{c.new} answer at "
            f"{at(seen.first_new)}, both versions for {seen.promotion:.2f}s, every worker on "
            f"v{c.new} at {at(c.all_new)}; rollback posted at {at(c.rollback_posted)}, last "
            f"v{c.new} answer {seen.rollback:.2f}s later, every worker on v{c.old} at "
            f"{at(c.all_old)}"
        )
    for model, segs in (("housing", housing), ("iris", segments(report, "iris"))):
        for version in sorted({s.version for s in segs}, key=int):
            mine = [s for s in segs if s.version == version]
            lines.append(
                f"{model} v{version}: {sum(s.count for s in mine)} answers, first at "
                f"{at(min(s.first for s in mine))}, last at {at(max(s.last for s in mine))}"
            )
    changes = {t["id"]: sum(1 for s in housing if s.thread == t["id"]) for t in report["threads"]}
    lines.append(f"housing version runs per wrk thread: {changes}")
    return "\n".join(lines)


def check_run(report: dict[str, Any], cycles: list[Cycle], iris: str) -> None:
    """The assertions shared by the one-minute test and the soak."""
    errors, threads = report["errors"], report["threads"]
    samples = [s for t in threads for s in t["samples"]]
    bad = sum(t["bad_status"] for t in threads)
    assert bad == 0 and errors["status"] == 0, f"{bad} non-2xx answers: {samples}"
    sockets = {k: errors[k] for k in ("connect", "read", "write", "timeout")}
    assert sum(sockets.values()) == 0, f"socket errors: {sockets}"
    assert sum(t["unparsed"] for t in threads) == 0, f"answers without a model: {samples}"
    assert sum(t["segments_dropped"] for t in threads) == 0
    answered = sum(s["count"] for t in threads for s in t["segments"])
    assert answered == report["requests"], "every answer is counted once"

    housing, iris_segs = segments(report, "housing"), segments(report, "iris")
    assert {s.version for s in iris_segs} == {iris}, "iris must not change"
    # The load ran before the first step and was still answered after the last one.
    assert housing[0].first < cycles[0].retrain_posted
    assert max(s.last for s in housing) > cycles[-1].all_old + GRACE_S
    found = timeline_errors(housing, cycles)
    assert not found, "\n".join(found[:20])


def served(stack: Stack) -> tuple[str, str]:
    """The housing and iris versions every worker serves (asserting the workers agree)."""
    housing = set(stack.server.versions_by_worker("housing", 10).values())
    iris = set(stack.server.versions_by_worker("iris", 10).values())
    assert len(housing) == 1 and len(iris) == 1, (housing, iris)
    return housing.pop(), iris.pop()


def publish(record_property: Callable[[str, Any], None], report: dict[str, Any], text: str) -> None:
    """Print the figures (the README quotes them) and attach them to the junit report."""
    seconds = report["duration_us"] / 1e6
    record_property("requests_per_s", round(report["requests"] / seconds, 1))
    record_property("p99_ms", round(report["latency_us"]["p99"] / 1000, 2))
    print(f"\n[load through change]\n{text}")


@pytest.mark.timeout(RETRAIN_TIMEOUT_S + 300)
def test_load_through_retrain_promotion_and_rollback(stack: Stack, record_property):
    old, iris = served(stack)
    pids = stack.server.worker_pids()
    load = start_load(stack.server, LOAD_LIMIT_SECONDS, stack.root, PAUSE_MS)
    try:
        wait_for_answers(stack.server, load, old, "the load to get going")
        cycle = change_and_roll_back(stack, load, old)
        # At least the minute, and a little past the change: the old version answers again.
        report = stop_load(load, max(load.started + LOAD_SECONDS, cycle.done + 2))
    finally:
        procs.stop(load.proc)
    assert cycle.done < load.ends, "the change must happen while the load runs"
    publish(record_property, report, describe(report, load, [cycle]))
    check_run(report, [cycle], iris)
    assert stack.server.worker_pids() == pids, "a gunicorn worker was replaced during the run"
    assert served(stack) == (old, iris)


@pytest.mark.soak
def test_soak_repeated_changes_under_load(stack: Stack, record_property):
    old, iris = served(stack)
    pids = stack.server.worker_pids()
    load = start_load(stack.server, SOAK_SECONDS, stack.root, 0)
    cycles: list[Cycle] = []
    try:
        wait_for_answers(stack.server, load, old, "the load to get going")
        longest = 0.0
        while time.time() + 1.5 * longest + AFTER_RETRAIN_S < load.ends:
            # A different candidate each time, so DVC trains again; each still beats v{old}.
            hgb = dict(STRONGER["hist_gradient_boosting"])
            hgb["max_iter"] += 5 * len(cycles)
            set_housing_params(stack.workspace, {"hist_gradient_boosting": hgb})
            started = time.time()
            cycles.append(change_and_roll_back(stack, load, old))
            longest = max(longest, time.time() - started)
        report = finish_load(load)
    finally:
        procs.stop(load.proc)
    assert len(cycles) >= 3, f"only {len(cycles)} cycles in {SOAK_SECONDS}s"
    assert len({c.new for c in cycles}) == len(cycles), "every cycle promotes a new version"
    publish(record_property, report, describe(report, load, cycles))
    check_run(report, cycles, iris)
    assert stack.server.worker_pids() == pids, "a gunicorn worker was replaced during the run"
    assert served(stack) == (old, iris)
