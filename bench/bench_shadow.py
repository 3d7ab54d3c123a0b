"""What shadow scoring costs the client: the API with a challenger, shadow off against on.

Not a test: run it by hand on a quiet machine after `make run` (or `dvc repro`) registered both
models, with wrk installed:

    .venv/bin/python -m bench.bench_shadow [--duration 10] [--rounds 3] [--connections 8]

On a copy of the registry, the champion's artefact is registered again and made `@challenger`
(the worst case: the shadow version costs what the champion costs). Three API servers (gunicorn,
2 workers each, every feature on) run side by side with SHADOW_SHARE 0, 0.2 (the default) and
1.0, driven by `wrk -t1 -c8` with single-row requests in interleaved rounds; each figure is the
median of the rounds and every ratio comes from this one run. Prints req/s, p50 and p99 per
server and model, the ratios against shadow off, and the shadow rows each server wrote.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow
from sqlalchemy import create_engine, func, select

from bench.bench_api import (
    ROOT,
    WrkResult,
    body_of,
    drain_prediction_log,
    free_port,
    isolated_registry,
    median_result,
    new_version,
    run_wrk,
    start_ours,
    stop,
    wait_http,
)
from core import registry
from core.prediction_log.shadow import prediction_shadow
from core.specs import ALIAS_CHALLENGER, MODEL_SPECS

SHARES = ("0", "0.2", "1.0")


def shadow_rows(database_url: str) -> int:
    """Rows in a server's prediction_shadow table."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(prediction_shadow)).scalar_one()
    finally:
        engine.dispose()


def main() -> None:
    """Start the three servers, drive them in interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per scenario")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    env = isolated_registry(workdir)
    registry.configure(env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    for spec in MODEL_SPECS.values():
        if registry.champion(spec.registered_name) is None:
            sys.exit(f"{spec.registered_name} has no @champion: run `make run` first")
        version = new_version(spec.name)
        mlflow.MlflowClient().set_registered_model_alias(
            spec.registered_name, ALIAS_CHALLENGER, version
        )
    procs, bases, urls = {}, {}, {}
    results: dict[tuple[str, str], list[WrkResult]] = {}
    try:
        for share in SHARES:
            port = free_port()
            urls[share] = f"sqlite:///{workdir / f'app-{share}.db'}"
            server_env = {
                **env,
                "SHADOW_SHARE": share,
                "DATABASE_URL": urls[share],
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"prom-{share}"),
            }
            procs[share] = start_ours(server_env, port)
            bases[share] = f"http://127.0.0.1:{port}"
        for share in SHARES:
            wait_http(bases[share] + "/health/ready", 240)
        c, d = args.connections, args.duration
        for round_no in range(args.rounds):
            for name in MODEL_SPECS:
                turn = round_no % len(SHARES)
                for share in SHARES[turn:] + SHARES[:turn]:
                    url = f"{bases[share]}/predict/{name}"
                    drain_prediction_log(bases[share], procs[share].pid)
                    run_wrk(url, body_of(name, 1), 1, c)  # warm-up (loads the challenger)
                    drain_prediction_log(bases[share], procs[share].pid)
                    result = run_wrk(url, body_of(name, 1), d, c)
                    results.setdefault((share, name), []).append(result)
                    print(
                        f"round {round_no + 1}: shadow {share:<4} {name:<8} "
                        f"{result.requests_per_s:>7.0f} req/s  p99 {result.p99_ms:.2f} ms",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            stop(proc)
    rows = {share: shadow_rows(urls[share]) for share in SHARES}
    print(
        f"\nshadow scoring overhead ({args.rounds} rounds x {args.duration}s, -c{args.connections})"
    )
    print(f"{'model':<8} {'SHADOW_SHARE':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  vs off")
    for name in MODEL_SPECS:
        off = median_result(results[("0", name)])
        for share in SHARES:
            r = median_result(results[(share, name)])
            ratio = (
                f"req/s {r.requests_per_s / off.requests_per_s:.2f}x, "
                f"p99 {r.p99_ms / off.p99_ms:.2f}x"
            )
            bad = f"  NOT COMPARABLE: {r.non_2xx} non-2xx" if r.non_2xx else ""
            print(
                f"{name:<8} {share:<13} {r.requests_per_s:>8.0f} {r.p50_ms:>8.2f} "
                f"{r.p99_ms:>8.2f}  {ratio}{bad}"
            )
    print("shadow rows written: " + ", ".join(f"share {s}: {rows[s]}" for s in SHARES))
    print(f"(registry copy and databases in {workdir}; removed)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
