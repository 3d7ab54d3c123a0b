"""Where a prediction request's CPU goes: py-spy samples every API worker under wrk load.

Not a test: run it by hand after `dvc repro` (or `make run`) registered both models, with wrk
and py-spy installed (py-spy is in requirements-dev.txt):

    .venv/bin/python -m bench.profile_api [--duration 12] [--connections 8] [--rate 250]

For each scenario (single-row and 1,000-row requests of each model) it starts wrk against the
API (2 workers, every feature on) and `py-spy record --subprocesses --threads` on the gunicorn
master, then sorts every sample into one share: the model, JSON in and out, validation,
metrics, the request log, the prediction log (its request-path part and its writer thread),
the rest of the predict service (model cache, building outputs) and everything else (Flask,
werkzeug, gunicorn, socket I/O). Threads waiting for work are left out.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_api import (  # noqa: E402
    free_port,
    isolated_registry,
    records,
    run_wrk,
    start_ours,
    stop,
    wait_http,
)
from core.specs import MODEL_SPECS  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")

# (category, pattern over one frame "function (file:line)"). A sample belongs to its deepest
# frame that matches a pattern (the first pattern, in this order, that this frame matches);
# frames of libraries not listed (SQLAlchemy under the log writer, werkzeug under the request
# log) count for the nearest listed frame above them.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        # Threads waiting for work (the log writer between flushes, the model refresher).
        ("idle", r"^(Condition|Event)\.wait |^Arbiter\.(sleep|wait_for_signals) |^sleep "),
        ("prediction log", r"prediction_log/"),
        ("metrics", r"prometheus_client/|prometheus_flask_exporter/|histogram_batch"),
        ("request log", r"app/request_log|\(logging/"),
        ("model", r"sklearn/|onnxruntime/|treelite/|core/compiled|core/features|threadpoolctl"),
        ("JSON", r"app/json_body|app/predict/encode|\(json/"),
        ("validation", r"app/predict/validation|app/predict/schemas|webargs/|marshmallow/"),
        ("predict service", r"app/predict/|app/model_cache"),
    )
)
SHOWN = [name for name, _ in CATEGORIES if name != "idle"] + ["other"]


def classify(frames: list[str]) -> str:
    """The category of one sampled stack (root first)."""
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def read_samples(path: Path) -> Counter[str]:
    """Samples per category from a py-spy raw (collapsed stacks) file."""
    shares: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # py-spy --subprocesses --threads prefixes "process N:..." and "thread (0x..)" frames.
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            shares[classify(frames)] += int(count)
    return shares


def profile(base: str, master_pid: int, model: str, rows: int, args, out: Path) -> tuple:
    """wrk on one scenario while py-spy samples every worker; (wrk result, shares)."""
    body = records(model, 1)[0] if rows == 1 else {"instances": records(model, rows)}
    url = f"{base}/predict/{model}"
    run_wrk(url, body, 2, args.connections, rows=rows, threads=1)  # warm-up
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(master_pid),
            "--subprocesses",
            "--threads",
            "--nonblocking",
            "--rate",
            str(args.rate),
            "--duration",
            str(max(args.duration - 2, 1)),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result = run_wrk(url, body, args.duration, args.connections, rows=rows, threads=1)
    spy.wait(60)
    return result, read_samples(out)


def main() -> None:
    """Profile each scenario and print the shares."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=12, help="seconds of load per scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--models", nargs="*", default=list(MODEL_SPECS))
    parser.add_argument("--keep", type=Path, help="folder to keep py-spy's raw stacks in")
    args = parser.parse_args()
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install -y {tool}")
    if not PY_SPY.exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install -r requirements-dev.txt")

    workdir = Path(tempfile.mkdtemp(prefix="profile-api-"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    env = isolated_registry(workdir)
    port = free_port()
    proc = start_ours({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}, port)
    base = f"http://127.0.0.1:{port}"
    results = []
    try:
        wait_http(f"{base}/health/ready", 180)
        for model in args.models:
            for rows in (1, args.batch_rows):
                out = (args.keep or workdir) / f"{model}-{rows}.txt"
                result, shares = profile(base, proc.pid, model, rows, args, out)
                results.append((f"{model} x{rows}", result, shares))
    finally:
        stop(proc)
    names = SHOWN
    print(f"\nbusy samples per category, % of the API processes' busy samples ({args.rate} Hz)")
    print(f"{'scenario':<16}{'req/s':>8}{'p99 ms':>8}  " + "".join(f"{n[:12]:>13}" for n in names))
    for scenario, result, shares in results:
        total = sum(v for k, v in shares.items() if k != "idle") or 1
        print(
            f"{scenario:<16}{result.requests_per_s:>8.0f}{result.p99_ms:>8.1f}  "
            + "".join(f"{100 * shares[n] / total:>12.1f}%" for n in names)
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
