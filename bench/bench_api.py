"""Benchmark of the prediction API against bare Flask and bare FastAPI apps serving the same
pipelines with scikit-learn.

Not a test: run it by hand on a quiet machine, after `dvc repro` (or `make run`) registered both
models, with wrk installed (`apt-get install -y wrk`):

    .venv/bin/python -m bench.bench_api [--duration 10] [--rounds 3] [--connections 8]

Every server runs with 2 workers and one BLAS/OpenMP thread each, and loads the same registered
champions: the API as users get it (validation, metrics, request log, prediction log on, each
model in the runtime its validation chose), bare Flask under gunicorn sync workers and bare
FastAPI under uvicorn (bench/bench_api_bare.py: parse JSON, call the scikit-learn pipeline).
All of them are started up front and driven by `wrk -t1 -c8` in interleaved rounds, so a burst
of load from elsewhere on the machine hits each alike; each figure is the median of the rounds
and every ratio comes from this one run. The registry is copied to a temp dir first (SQLite
registries), so the hot-swap step, which registers and promotes a new version under load,
leaves the real registry untouched.

Prints: req/s, p50/p99 and rows/s per server and scenario; the ratios the issue sets targets
for; memory (PSS of each server's process tree, measured alone); in-process single-row latency
of each model in each runtime; the prediction log's written/dropped rows; the hot-swap result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import registry, settings  # noqa: E402 - after the path fix for `python bench/...`
from core.specs import MODEL_SPECS  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
LUA = ROOT / "bench" / "bench_api_wrk.lua"
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
SERVERS = ("api", "flask", "fastapi", "flask-compiled")


@dataclass
class WrkResult:
    """One wrk run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    rows_per_request: int = 1

    @property
    def rows_per_s(self) -> float:
        """Predicted rows per second."""
        return self.requests_per_s * self.rows_per_request


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pss_mb(pid: int) -> float:
    """Total PSS (MB) of pid's process tree, from /proc/<pid>/smaps_rollup."""
    total_kb = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def wait_http(url: str, timeout: float, ok=lambda r: r.status_code == 200) -> None:
    """Poll url until ok(response) or raise after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=2)
            if ok(r):
                return
            last = r.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout}s (last: {last})")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group and wait (no-op when it already exited)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, body: Any, seconds: int, connections: int, rows: int = 1, threads: int = 1
) -> WrkResult:
    """Drive url with POSTs of body for seconds; parse wrk's report."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
        body_file = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(LUA),
                url,
            ],
            env={**os.environ, "WRK_BODY_FILE": body_file},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(body_file)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # Anchor at line start: "Thread Stats" lines also contain percentages such as "71.50%".
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps,
        p50,
        p99,
        int(non2xx.group(1)) if non2xx else 0,
        sum(int(x) for x in sock.groups()) if sock else 0,
        rows,
    )


def records(name: str, n: int) -> list[dict[str, float]]:
    """n valid records of a model (the spec's example row)."""
    return [MODEL_SPECS[name].example_row() for _ in range(n)]


def body_of(name: str, rows: int) -> Any:
    """One record, or {"instances": [...]} of rows records."""
    return records(name, 1)[0] if rows == 1 else {"instances": records(name, rows)}


def _popen(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_ours(env: dict[str, str], port: int) -> subprocess.Popen:
    """Our API under deploy/gunicorn.conf.py with 2 workers."""
    cmd = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
    return _popen(cmd, {**env, "API_PORT": str(port), "WEB_CONCURRENCY": "2"})


def start_bare(env: dict[str, str], port: int) -> subprocess.Popen:
    """The bare Flask app, same gunicorn worker model and count."""
    cmd = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket"]
    return _popen([*cmd, "bench.bench_api_bare:create_app()"], {**env, **THREAD_ENV})


def start_bare_compiled(env: dict[str, str], port: int) -> subprocess.Popen:
    """The bare Flask app serving the form the API serves (compiled where validation proved it)."""
    return start_bare({**env, "BARE_COMPILED": "1"}, port)


def start_fastapi(env: dict[str, str], port: int) -> subprocess.Popen:
    """The bare FastAPI app under uvicorn, 2 workers."""
    cmd = [str(BIN / "uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--http", "httptools", "--loop", "uvloop"]  # uvicorn[standard], as deployed
    cmd += ["--log-level", "warning", "--no-access-log", "--factory"]
    return _popen([*cmd, "bench.bench_api_bare:create_fastapi_app"], {**env, **THREAD_ENV})


STARTERS: dict[str, Callable[[dict[str, str], int], subprocess.Popen]] = {
    "api": start_ours,
    "flask": start_bare,
    "fastapi": start_fastapi,
    "flask-compiled": start_bare_compiled,
}
READY_PATH = {
    "api": "/health/ready",
    "flask": "/ready",
    "fastapi": "/ready",
    "flask-compiled": "/ready",
}


def isolated_registry(workdir: Path) -> dict[str, str]:
    """Environment pointing at a copy of the registry (SQLite) so the bench cannot change it."""
    uri = settings.mlflow_tracking_uri()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench-app.db'}"
    if uri.startswith("sqlite:///"):
        src = Path(uri.removeprefix("sqlite:///"))
        dst = workdir / "mlflow.db"
        shutil.copy(src, dst)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{dst}"
    else:
        env["MLFLOW_TRACKING_URI"] = uri
    env["MLFLOW_REGISTRY_URI"] = env["MLFLOW_TRACKING_URI"]
    return env


def new_version(name: str) -> str:
    """Register the champion's artifact again as a new version; returns its number."""
    import mlflow

    spec = MODEL_SPECS[name]
    champ = registry.champion(spec.registered_name)
    mv = mlflow.register_model(champ.source, spec.registered_name, tags=champ.tags)
    return str(mv.version)


def drain_prediction_log(base_url: str, master_pid: int, timeout: float = 300) -> float:
    """Wait until every worker has written its buffered prediction rows; returns seconds."""
    workers = set(tree_pids(master_pid)) - {master_pid}
    started = time.monotonic()
    empty: set[int] = set()
    while time.monotonic() - started < timeout:
        checks = requests.get(f"{base_url}/health", timeout=10).json()["checks"]
        pid = checks["process"]["pid"]
        if checks["prediction_log"]["pending_rows"] == 0:
            empty.add(pid)
        else:
            empty.discard(pid)
        if workers <= empty:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def prediction_log_counts(base_url: str) -> dict[str, float]:
    """prediction_log_rows_total by outcome, summed over workers."""
    counts = {"written": 0.0, "dropped": 0.0}
    for line in requests.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        match = re.match(r'prediction_log_rows_total\{outcome="(\w+)"\} (\S+)', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    return counts


def served_runtimes(base_url: str) -> dict[str, str]:
    """Which runtime serves each model, from /models/info."""
    models = requests.get(f"{base_url}/models/info", timeout=10).json()["models"]
    return {m["name"]: m.get("runtime") or "?" for m in models}


def hot_swap(base_url: str, master_pid: int, seconds: int, connections: int) -> dict[str, Any]:
    """Promote a new iris version during a wrk run; time until every worker serves it."""
    workers = set(tree_pids(master_pid)) - {master_pid}
    spec = MODEL_SPECS["iris"]
    target = new_version("iris")
    result: dict[str, Any] = {"version": target}

    def promote_and_watch() -> None:
        time.sleep(seconds / 3)
        started = time.monotonic()
        registry.promote(spec.registered_name, target)
        seen: set[int] = set()
        while time.monotonic() - started < seconds:
            try:
                health = requests.get(f"{base_url}/health", timeout=2).json()
            except requests.RequestException:
                continue
            pid = health["checks"]["process"]["pid"]
            if health["checks"]["models"]["iris"]["version"] == target:
                seen.add(pid)
            if workers <= seen:
                result["converged_s"] = round(time.monotonic() - started, 2)
                return
            time.sleep(0.02)
        result["converged_s"] = None

    watcher = threading.Thread(target=promote_and_watch)
    watcher.start()
    load = run_wrk(f"{base_url}/predict/iris", body_of("iris", 1), seconds, connections)
    watcher.join()
    result["load"] = load
    return result


def in_process_latency(repeats: int = 2000) -> dict[str, dict[str, float]]:
    """Median single-row and per-row (1,000-row batch) latency of each model in each runtime it
    can run in here, one thread, in µs."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from core import compiled

    out: dict[str, dict[str, float]] = {}
    with threadpool_limits(limits=1):
        for name, spec in MODEL_SPECS.items():
            info = registry.champion(spec.registered_name)
            pipeline, files = registry.load_model_and_files(spec.registered_name, info.version)
            probe = np.asarray([list(spec.example_row().values())], dtype=np.float64)
            runtimes = {"sklearn": pipeline}
            serving = compiled.for_serving(spec.task, pipeline, files, info.tags, probe)
            if serving.runtime != compiled.RUNTIME_SKLEARN:
                runtimes[serving.runtime] = serving.model
            batch = probe * np.linspace(0.5, 1.5, 1000)[:, None]  # varied, valid rows
            for runtime, model in runtimes.items():
                call = model.predict if spec.task == "regression" else model.predict_proba
                call(probe)
                timings = []
                for i in range(repeats):
                    row = batch[i % 1000 : i % 1000 + 1]
                    started = time.perf_counter()
                    call(row)
                    timings.append(time.perf_counter() - started)
                started = time.perf_counter()
                for _ in range(20):
                    call(batch)
                per_row = (time.perf_counter() - started) / 20 / len(batch)
                out[f"{name} {runtime}"] = {
                    "single_us": statistics.median(timings) * 1e6,
                    "batch_us_per_row": per_row * 1e6,
                }
    return out


def main() -> None:
    """Run every server and scenario; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--skip-swap", action="store_true", help="no hot-swap measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    env = isolated_registry(workdir)
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    registry.configure(env["MLFLOW_TRACKING_URI"])
    for spec in MODEL_SPECS.values():
        if registry.champion(spec.registered_name) is None:
            sys.exit(f"{spec.registered_name} has no @champion: run `dvc repro` first")

    d, c, n = args.duration, args.connections, args.batch_rows
    procs: dict[str, subprocess.Popen] = {}
    bases: dict[str, str] = {}
    results: dict[tuple[str, str], list[WrkResult]] = {}
    drains: list[float] = []
    try:
        for server in SERVERS:
            port = free_port()
            server_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"prom-{server}")}
            procs[server] = STARTERS[server](server_env, port)
            bases[server] = f"http://127.0.0.1:{port}"
        for server in SERVERS:
            wait_http(bases[server] + READY_PATH[server], 240)
        runtimes = served_runtimes(bases["api"])

        def settle(server: str) -> None:
            if server == "api":  # the API's prediction log holds no backlog into the next run
                drains.append(drain_prediction_log(bases["api"], procs["api"].pid))

        plan = [(m, 1) for m in MODEL_SPECS] + [(m, n) for m in MODEL_SPECS]
        for round_no in range(args.rounds):
            for name, k in plan:
                scenario = f"{name} x{k}"
                # Rotate who goes first, so no server always follows the same neighbour.
                turn = round_no % len(SERVERS)
                order = SERVERS[turn:] + SERVERS[:turn]
                for server in order:
                    url = f"{bases[server]}/predict/{name}"
                    settle(server)
                    run_wrk(url, body_of(name, k), 1, c, rows=k)  # warm-up
                    settle(server)
                    result = run_wrk(url, body_of(name, k), d, c, rows=k)
                    results.setdefault((server, scenario), []).append(result)
                    print(
                        f"round {round_no + 1}: {server:<14} {scenario:<14} "
                        f"{result.requests_per_s:>8.0f} req/s  p99 {result.p99_ms:.1f} ms",
                        flush=True,
                    )
        log_counts = prediction_log_counts(bases["api"])
        log_counts["max_drain_s"] = max(drains) if drains else 0.0
    finally:
        for proc in procs.values():
            stop(proc)

    # Memory: PSS splits pages shared between processes among all of them, also across
    # servers; so each server is measured alone, after the same short load.
    memory: dict[str, float] = {}
    swap: dict[str, Any] = {}
    for server in SERVERS:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = STARTERS[server]({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "mem")}, port)
        try:
            wait_http(base + READY_PATH[server], 240)
            for name in MODEL_SPECS:
                run_wrk(f"{base}/predict/{name}", body_of(name, 1), 3, c)
                run_wrk(f"{base}/predict/{name}", body_of(name, n), 3, c, rows=n)
            if server == "api":
                drain_prediction_log(base, proc.pid)
            memory[server] = pss_mb(proc.pid)
            if server == "api" and not args.skip_swap:
                swap = hot_swap(base, proc.pid, max(d, 12), c)
        finally:
            stop(proc)

    latency = in_process_latency()
    medians = {key: median_result(runs) for key, runs in results.items()}
    report(medians, memory, swap, latency, runtimes, n, args, log_counts)
    shutil.rmtree(workdir, ignore_errors=True)


def median_result(runs: list[WrkResult]) -> WrkResult:
    """The median of each figure over the rounds (errors are summed)."""
    return WrkResult(
        statistics.median(r.requests_per_s for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.non_2xx for r in runs),
        sum(r.socket_errors for r in runs),
        runs[0].rows_per_request,
    )


def report(
    results: dict[tuple[str, str], WrkResult],
    memory: dict[str, float],
    swap: dict[str, Any],
    latency: dict[str, dict[str, float]],
    runtimes: dict[str, str],
    n: int,
    args: argparse.Namespace,
    log_counts: dict[str, float],
) -> None:
    """Print the results table and the target ratios."""
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s, median of {args.rounds} interleaved "
        f"rounds, 2 workers per server, one BLAS thread, {os.cpu_count()} CPUs; the API serves "
        + ", ".join(f"{m} with {r}" for m, r in runtimes.items())
        + "\n"
    )
    print(
        f"{'server':<14} {'scenario':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rows/s':>11} {'non-2xx':>8}"
    )
    for (server, scenario), r in sorted(
        results.items(), key=lambda kv: (kv[0][1], SERVERS.index(kv[0][0]))
    ):
        print(
            f"{server:<14} {scenario:<14} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.rows_per_s:>11.0f} {r.non_2xx + r.socket_errors:>8}"
        )

    def ratio(scenario: str, other: str, rows: bool = False) -> float:
        api, base = results[("api", scenario)], results[(other, scenario)]
        return (
            (api.rows_per_s / base.rows_per_s)
            if rows
            else (api.requests_per_s / base.requests_per_s)
        )

    failed = {f"{s} {sc}": r.non_2xx + r.socket_errors for (s, sc), r in results.items()}
    for run, count in failed.items():
        if count:  # a server that fails requests is not a figure to compare with
            print(f"NOT COMPARABLE: {run} had {count} non-2xx answers or socket errors")
    print("\nratios from this run (targets in brackets)")
    for name in MODEL_SPECS:
        single, batch = f"{name} x1", f"{name} x{n}"
        api_p99 = results[("api", single)].p99_ms
        batch_p99 = results[("api", batch)].p99_ms / results[("flask", batch)].p99_ms
        print(
            f"  {name:<8} single req/s: api/flask {ratio(single, 'flask'):.2f} [>= 1.3], "
            f"api/fastapi {ratio(single, 'fastapi'):.2f} [>= 1.0]; p99 {api_p99:.1f} ms [<= 8]"
        )
        print(
            f"  {'':<8} x{n} rows/s: api/flask {ratio(batch, 'flask', rows=True):.2f} [>= 1.0], "
            f"api/fastapi {ratio(batch, 'fastapi', rows=True):.2f}; p99 api/flask "
            f"{batch_p99:.2f} [<= 2]"
        )
        print(
            f"  {'':<8} against bare Flask serving the same compiled form: single req/s "
            f"{ratio(single, 'flask-compiled'):.2f}, x{n} rows/s "
            f"{ratio(batch, 'flask-compiled', rows=True):.2f}"
        )
    print(
        f"\nprediction log (api): {log_counts['written']:.0f} rows written, "
        f"{log_counts['dropped']:.0f} dropped; longest drain after a run "
        f"{log_counts['max_drain_s']:.1f} s"
    )
    print("\nmemory (PSS of the whole process tree: master + 2 workers, both models)")
    for server, mb in memory.items():
        target = " [<= 400]" if server == "api" else ""
        print(f"  {server:<14} {mb:>7.0f} MB{target}")
    print("\nin-process latency, one thread (µs): single row / per row of a 1,000-row batch")
    for key, figures in latency.items():
        print(f"  {key:<24} {figures['single_us']:>8.1f} / {figures['batch_us_per_row']:>6.2f}")
    if swap:
        load = swap["load"]
        print(
            f"\nhot swap under load: promoted iris v{swap['version']}; every worker served it "
            f"after {swap['converged_s']} s; non-2xx during the run: "
            f"{load.non_2xx + load.socket_errors} ({load.requests_per_s:.0f} req/s)"
        )


if __name__ == "__main__":
    main()
