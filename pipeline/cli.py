"""Command line for people: train, versions, promote, rollback, migrate.

python -m pipeline.cli train [--model all|housing|iris] [--force] [--if-missing]
python -m pipeline.cli versions [--model all|housing|iris]
python -m pipeline.cli promote housing 3
python -m pipeline.cli rollback housing
python -m pipeline.cli migrate      # the app database and MLflow's store to the current schema
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core import db, registry, settings
from core.settings import PROJECT_ROOT
from core.specs import MODEL_SPECS
from pipeline import workspace
from pipeline.params import ParamsError
from pipeline.runner import PipelineError, resolve_models, run_pipeline


def _train(args: argparse.Namespace) -> int:
    names = resolve_models(args.model)
    registry.ensure_store()
    if args.if_missing:
        names = [m for m in names if registry.champion(MODEL_SPECS[m].registered_name) is None]
        if not names:
            print("every model has a champion; nothing to train")
            return 0
    results = run_pipeline(
        names,
        force=args.force,
        workspace=args.workspace,
        progress=lambda m, s: print(f"  .. {s} {m}", flush=True),
    )
    for model, res in results.items():
        verdict = "promoted" if res["promoted"] else "not promoted"
        version = res["candidate_version"] or "-"
        print(f"{model:8} candidate v{version:<3} {verdict:12} {res['reason']}")
        print(f"{'':8} metrics {json.dumps(res['metrics'], sort_keys=True)}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    registry.configure()
    for model in resolve_models(args.model):
        name = MODEL_SPECS[model].registered_name
        print(f"{model} ({name})")
        for v in registry.list_versions(name):
            aliases = ",".join(sorted(v.aliases)) or "-"
            metrics = v.tag_json("metrics", {})
            shown = " ".join(f"{k}={val:.4f}" for k, val in sorted(metrics.items()))
            note = v.tags.get(registry.TAG_REJECTED_REASON, "")
            print(
                f"  v{v.version:<4} {aliases:28} {v.tags.get('algorithm', '?'):24} {shown} {note}"
            )
    return 0


def _promote(args: argparse.Namespace) -> int:
    registry.configure()
    info = registry.promote(MODEL_SPECS[args.model].registered_name, args.version)
    print(f"{args.model}: version {info.version} is now @champion")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    registry.configure()
    info = registry.rollback(MODEL_SPECS[args.model].registered_name)
    print(f"{args.model}: rolled back; version {info.version} is now @champion")
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    # Both stores from the environment (DATABASE_URL, MLFLOW_BACKEND_STORE_URI): no URL, and so
    # no password, on a command line.
    url = settings.database_url()
    print(f"app database {db.redact(url)}: schema revision {db.migrate(url)}")
    store = settings.mlflow_backend_store_uri()
    if store is None:
        print("MLflow store: behind a tracking server (no MLFLOW_BACKEND_STORE_URI): not here")
    else:
        registry.upgrade_store(store)
        print(f"MLflow store {db.redact(store)}: at this MLflow's schema")
    return 0


def _init_workspace(args: argparse.Namespace) -> int:
    # Run at every container start: links made by an older image are pointed at this one.
    workspace.link(args.dest)
    print(f"workspace {args.dest}: code and params linked from {PROJECT_ROOT}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; errors print one line and exit 1."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.cli", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run the DVC pipeline and the promotion gate")
    train.add_argument("--model", default="all")
    train.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    train.add_argument("--if-missing", action="store_true", help="only models with no champion")
    train.add_argument("--workspace", type=Path, default=None, help="DVC workspace (default: .)")
    train.set_defaults(func=_train)
    versions = sub.add_parser("versions", help="list registry versions with aliases and metrics")
    versions.add_argument("--model", default="all")
    versions.set_defaults(func=_versions)
    promote = sub.add_parser("promote", help="make a version the champion")
    promote.add_argument("model", choices=sorted(MODEL_SPECS))
    promote.add_argument("version")
    promote.set_defaults(func=_promote)
    rollback = sub.add_parser("rollback", help="champion back to the previous champion")
    rollback.add_argument("model", choices=sorted(MODEL_SPECS))
    rollback.set_defaults(func=_rollback)
    migrate = sub.add_parser(
        "migrate", help="bring the app database and MLflow's store to the current schema"
    )
    migrate.set_defaults(func=_migrate)
    init = sub.add_parser(
        "init-workspace", help="make DEST a workspace of data and state, code linked from here"
    )
    init.add_argument("dest", type=Path)
    init.set_defaults(func=_init_workspace)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (registry.RegistryError, ParamsError, PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
