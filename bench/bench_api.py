"""Benchmark of the prediction API against a bare Flask route and `mlflow models serve`.

Not a test: run it by hand on a quiet machine, after `dvc repro` (or `make run`) registered both
models, with wrk installed (`apt-get install -y wrk`):

    .venv/bin/python -m bench.bench_api [--duration 10] [--connections 8]

Each server runs alone (2 workers) and is driven by wrk with the same duration and connection
count. The registry is copied to a temp dir first (SQLite registries), so the hot-swap step,
which registers and promotes a new version under load, leaves the real registry untouched.
Prints one table: req/s, p50/p99, rows/s, non-2xx, memory (PSS of each server's process tree),
the ratios the issue sets targets for, and the hot-swap result.
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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
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


@dataclass
class Server:
    """A running server under test."""

    name: str
    proc: subprocess.Popen
    base_url: str
    predict_path: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)  # builds request bodies per model


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


def run_wrk(url: str, body: Any, seconds: int, connections: int, rows: int = 1) -> WrkResult:
    """Drive url with POSTs of body for seconds; parse wrk's report."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
        body_file = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
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


def start_ours(env: dict[str, str], port: int) -> subprocess.Popen:
    """Our API under deploy/gunicorn.conf.py with 2 workers."""
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env={**env, "API_PORT": str(port), "WEB_CONCURRENCY": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_bare(env: dict[str, str], port: int) -> subprocess.Popen:
    """The bare Flask route, same gunicorn worker model and count."""
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "bench.bench_api_bare:create_app()",
        ],
        cwd=ROOT,
        env={**env, **THREAD_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_mlflow(env: dict[str, str], port: int, registered_name: str) -> subprocess.Popen:
    """`mlflow models serve` of one champion, 2 workers, local env."""
    return subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{registered_name}@champion",
            "--env-manager",
            "local",
            "-w",
            "2",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env={**env, **THREAD_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def isolated_registry(workdir: Path) -> dict[str, str]:
    """Environment pointing at a copy of the registry (SQLite) so the bench cannot change it."""
    uri = settings.mlflow_tracking_uri()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    # mlflow serve execs `uvicorn` by name: the venv's bin must be on PATH.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench-app.db'}"
    if uri.startswith("sqlite:///"):
        src = Path(uri.removeprefix("sqlite:///"))
        dst = workdir / "mlflow.db"
        shutil.copy(src, dst)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{dst}"
    else:
        env["MLFLOW_TRACKING_URI"] = uri
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
    load = run_wrk(f"{base_url}/predict/iris", records("iris", 1)[0], seconds, connections)
    watcher.join()
    result["load"] = load
    return result


@dataclass
class Target:
    """One server under test: how to reach it and what to send."""

    name: str
    proc: subprocess.Popen
    base: str
    urls: dict[str, str]  # model -> predict URL
    body: Any  # (model, rows) -> request body
    settle: Any = None  # called before each timed run (drains the prediction log)


def _api_body(name: str, k: int) -> Any:
    return records(name, 1)[0] if k == 1 else {"instances": records(name, k)}


def _mlflow_body(name: str, k: int) -> Any:
    return {"dataframe_records": records(name, k)}


def main() -> None:
    """Run every server and scenario; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--skip-mlflow", action="store_true")
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
    targets: list[Target] = []
    try:
        # Every server is started up front and the scenarios alternate between them, so a
        # burst of load from elsewhere on the machine hits all of them alike; each
        # (server, scenario) keeps its best of --rounds runs.
        port = free_port()
        api = start_ours({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}, port)
        api_base = f"http://127.0.0.1:{port}"
        drains: list[float] = []
        targets.append(
            Target(
                "api",
                api,
                api_base,
                {m: f"{api_base}/predict/{m}" for m in MODEL_SPECS},
                _api_body,
                lambda: drains.append(drain_prediction_log(api_base, api.pid)),
            )
        )
        port = free_port()
        bare = start_bare(env, port)
        bare_base = f"http://127.0.0.1:{port}"
        targets.append(
            Target(
                "bare",
                bare,
                bare_base,
                {m: f"{bare_base}/predict/{m}" for m in MODEL_SPECS},
                _api_body,
            )
        )
        mlflow_targets = []
        if not args.skip_mlflow:
            for name, spec in MODEL_SPECS.items():
                port = free_port()
                proc = start_mlflow(env, port, spec.registered_name)
                base = f"http://127.0.0.1:{port}"
                mlflow_targets.append(
                    Target(
                        f"mlflow serve ({name})",
                        proc,
                        base,
                        {name: f"{base}/invocations"},
                        _mlflow_body,
                    )
                )
        targets.extend(mlflow_targets)

        wait_http(f"{api_base}/health/ready", 180)
        wait_http(f"{bare_base}/ready", 180)
        for _ in range(8):  # every bare worker loads its models before the timed runs
            requests.get(f"{bare_base}/ready", timeout=60)
        for target in mlflow_targets:
            wait_http(f"{target.base}/ping", 180)

        best: dict[tuple[str, str], WrkResult] = {}
        plan = [(m, 1) for m in MODEL_SPECS] + [(m, n) for m in MODEL_SPECS]
        for name, k in plan:
            scenario = f"{name} x{k}"
            for _ in range(args.rounds):
                for target in targets:
                    if name not in target.urls or (k > 1 and target.name.startswith("mlflow")):
                        continue
                    url, body = target.urls[name], target.body(name, k)
                    server = "mlflow serve" if target.name.startswith("mlflow") else target.name
                    if target.settle:
                        target.settle()
                    run_wrk(url, body, 1, c, rows=k)  # warm-up
                    if target.settle:
                        target.settle()
                    result = run_wrk(url, body, d, c, rows=k)
                    key = (server, scenario)
                    if key not in best or result.requests_per_s > best[key].requests_per_s:
                        best[key] = result
        rows = [(server, scenario, result) for (server, scenario), result in best.items()]
        log_counts = prediction_log_counts(api_base)
        log_counts["max_drain_s"] = max(drains) if drains else 0.0
    finally:
        for target in targets:
            stop(target.proc)

    # Memory: PSS splits pages shared between processes among all of them, also across
    # servers; so each server is measured alone, after the same short load.
    memory: dict[str, float] = {}
    swap: dict[str, Any] = {}
    starters = [("api (2 models)", "api"), ("bare flask (2 models)", "bare")]
    if not args.skip_mlflow:
        starters += [(f"mlflow serve ({m})", m) for m in MODEL_SPECS]
    for label, kind in starters:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if kind == "api":
            proc = start_ours({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom2")}, port)
            wait_http(f"{base}/health/ready", 180)
            urls, body = {m: f"{base}/predict/{m}" for m in MODEL_SPECS}, _api_body
        elif kind == "bare":
            proc = start_bare(env, port)
            wait_http(f"{base}/ready", 180)
            for _ in range(8):
                requests.get(f"{base}/ready", timeout=60)
            urls, body = {m: f"{base}/predict/{m}" for m in MODEL_SPECS}, _api_body
        else:
            proc = start_mlflow(env, port, MODEL_SPECS[kind].registered_name)
            wait_http(f"{base}/ping", 180)
            urls, body = {kind: f"{base}/invocations"}, _mlflow_body
        try:
            for name, url in urls.items():
                run_wrk(url, body(name, 1), 3, c)
                run_wrk(url, body(name, n), 3, c, rows=n)
            if kind == "api":
                drain_prediction_log(base, proc.pid)
            memory[label] = pss_mb(proc.pid)
            if kind == "api":
                swap = hot_swap(base, proc.pid, max(d, 12), c)
        finally:
            stop(proc)

    rows.sort(key=lambda r: (["api", "bare", "mlflow serve"].index(r[0]), r[1]))
    report(rows, memory, swap, n, c, d, log_counts, args.rounds)
    shutil.rmtree(workdir, ignore_errors=True)


def report(
    rows: list[tuple[str, str, WrkResult]],
    memory: dict[str, float],
    swap: dict[str, Any],
    n: int,
    c: int,
    d: int,
    log_counts: dict[str, float],
    rounds: int,
) -> None:
    """Print the results table and the target ratios."""
    print(
        f"\nwrk: {c} connections, {d}s per run, best of {rounds} alternating runs, "
        f"2 workers per server, {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'server':<14} {'scenario':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rows/s':>11} {'non-2xx':>8}"
    )
    for server, scenario, r in rows:
        print(
            f"{server:<14} {scenario:<16} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.rows_per_s:>11.0f} {r.non_2xx + r.socket_errors:>8}"
        )
    by = {(s, sc): r for s, sc, r in rows}
    print("\nratios (targets: api/bare >= 0.80 single, >= 0.50 batch rows/s; api/mlflow >= 10)")
    for name in MODEL_SPECS:
        api, bare = by.get(("api", f"{name} x1")), by.get(("bare", f"{name} x1"))
        mlf = by.get(("mlflow serve", f"{name} x1"))
        line = f"  {name:<8} single: api/bare {api.requests_per_s / bare.requests_per_s:.2f}"
        if mlf:
            line += f", api/mlflow {api.requests_per_s / mlf.requests_per_s:.1f}x"
        api_b, bare_b = by.get(("api", f"{name} x{n}")), by.get(("bare", f"{name} x{n}"))
        line += f"; batch x{n} rows/s: api/bare {api_b.rows_per_s / bare_b.rows_per_s:.2f}"
        print(line)
    if log_counts:
        print(
            f"\nprediction log (api): {log_counts['written']:.0f} rows written, "
            f"{log_counts['dropped']:.0f} dropped; longest drain after a run "
            f"{log_counts['max_drain_s']:.1f} s"
        )
    print("\nmemory (PSS of the whole process tree)")
    for name, mb in memory.items():
        print(f"  {name:<24} {mb:>7.0f} MB")
    if swap:
        load = swap["load"]
        print(
            f"\nhot swap under load: promoted iris v{swap['version']}; every worker served it "
            f"after {swap['converged_s']} s; non-2xx during the run: "
            f"{load.non_2xx + load.socket_errors} ({load.requests_per_s:.0f} req/s)"
        )


if __name__ == "__main__":
    main()
