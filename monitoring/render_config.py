"""Render a Prometheus config with loopback targets for the native stack and the tests.

    python monitoring/render_config.py --api 127.0.0.1:8000 --worker 127.0.0.1:9101 \
        --monitor 127.0.0.1:9102 > prometheus.yml

Same jobs and rules as monitoring/prometheus.yml (which uses compose DNS names)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().with_name("alerts.yml")


def render(
    api: list[str],
    worker: list[str],
    monitor: list[str] | None = None,
    interval: str = "10s",
    rules: Path = RULES,
) -> str:
    """Prometheus YAML scraping the given api, retrain worker and monitor worker targets."""
    jobs = {"api": api, "worker": worker, "monitor": monitor or []}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
            if targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def main() -> None:
    """Print the config for targets given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--worker", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--monitor", action="append", default=[], help="host:port, repeatable")
    parser.add_argument("--interval", default="10s")
    args = parser.parse_args()
    print(render(args.api, args.worker, args.monitor, args.interval), end="")


if __name__ == "__main__":
    main()
