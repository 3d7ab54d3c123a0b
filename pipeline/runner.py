"""run_pipeline: `dvc repro` for some models, then the per-model registration outcome.

This is what the Celery worker and the CLI call. Runs are serialised by a file lock in the
workspace, because DVC refuses a second concurrent repro with "is busy"."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy.engine import Engine, make_url

from core import db, registry, settings
from core.settings import PROJECT_ROOT
from core.specs import MODEL_SPECS
from pipeline import feedback_data, io, params

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]  # (model, stage)

STAGE_LINE = re.compile(r"Running stage '(\w+)@(\w+)'")
STAGES = ("prepare", "features", "train", "evaluate", "validate", "register")
DB_CONNECT_TIMEOUT_SECONDS = 10


class PipelineError(RuntimeError):
    """A stage failed; the message says which and why, in words a user can act on."""

    def __init__(self, message: str, stage: str | None = None):
        super().__init__(message)
        self.stage = stage


def resolve_models(models: str | Iterable[str]) -> list[str]:
    """'all', one name, or several names -> validated list of model names."""
    names = (
        list(MODEL_SPECS)
        if models == "all"
        else [models]
        if isinstance(models, str)
        else list(models)
    )
    unknown = [m for m in names if m not in MODEL_SPECS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(MODEL_SPECS)} or 'all'")
    return names


def _env(run_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.QUIET_ENV)
    env["PIPELINE_RUN_ID"] = run_id
    # Stage commands say `python`: make it this interpreter, with the workspace importable.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri()
    env["MLFLOW_REGISTRY_URI"] = env["MLFLOW_TRACKING_URI"]  # never a stale inherited one
    env["STATE_DIR"] = str(settings.state_dir())
    return env


def _repro(
    workspace: Path, targets: list[str], args: list[str], env: dict, progress: Progress | None
) -> None:
    cmd = [sys.executable, "-m", "dvc", "repro", *args, *targets]
    tail: deque[str] = deque(maxlen=40)
    current: str | None = None
    with subprocess.Popen(
        cmd,
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            match = STAGE_LINE.search(line)
            if match:
                current = f"{match.group(1)}@{match.group(2)}"
                if progress:
                    progress(match.group(2), match.group(1))
        code = proc.wait()
    if code != 0:
        reasons = [
            ln
            for ln in tail
            if ln.startswith(("ERROR", "validate", "train:", "SystemExit"))
            or "rejected" in ln
            or "Error" in ln
        ]
        detail = "; ".join(reasons[-4:]) or "; ".join(list(tail)[-3:])
        raise PipelineError(f"pipeline stage {current or '?'} failed: {detail}", stage=current)


def _feedback_engine(url: str) -> Engine:
    # A server database that does not answer must not hold the retrain for minutes.
    server = make_url(url).get_backend_name() == "postgresql"
    connect_args = {"connect_timeout": DB_CONNECT_TIMEOUT_SECONDS} if server else {}
    return db.make_engine(url, connect_args=connect_args)


def export_feedback(workspace: Path, names: list[str]) -> None:
    """Refresh data/feedback/<model>.csv from the app database; keep the old files if it fails."""
    try:
        engine = _feedback_engine(settings.database_url())
        try:
            db.ensure_schema(engine)
            for model in names:
                feedback_data.export(engine, model, workspace)
        finally:
            engine.dispose()
    except Exception as exc:  # feedback is extra data: a retrain without it beats no retrain
        log.warning(
            "feedback export failed (%s: %s); training on the feedback files already in the "
            "workspace",
            type(exc).__name__,
            exc,
        )
    for model in names:
        feedback_data.ensure(model, workspace)  # DVC fails on a missing dependency


def _result(model: str, workspace: Path, run_id: str) -> dict[str, Any]:
    report = io.read_json(workspace / io.reports_dir(model) / "registration.json")
    fresh = report.get("pipeline_run_id") == run_id
    spec = MODEL_SPECS[model]
    champ = registry.champion(spec.registered_name)
    return {
        "candidate_version": report.get("candidate_version") if fresh else None,
        "promoted": bool(report.get("promoted")) if fresh else False,
        "reason": report.get("reason")
        if fresh
        else f"up to date: nothing changed since version {report.get('candidate_version')}",
        "metrics": report.get("metrics"),
        "champion_metrics": report.get("champion_metrics") if fresh else None,
        "champion_version": champ.version if champ else None,
        "up_to_date": not fresh,
    }


def run_pipeline(
    models: str | Iterable[str] = "all",
    force: bool = False,
    workspace: Path | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Reproduce the pipeline for models; returns per-model registration results."""
    names = resolve_models(models)
    workspace = Path(workspace or PROJECT_ROOT)
    params.check(params.load(workspace / params.PARAMS_FILE))  # fail before touching anything
    registry.ensure_store()
    run_id = run_id or uuid.uuid4().hex
    env = _env(run_id)
    lock_path = workspace / ".dvc" / "tmp" / "pipeline-run.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        export_feedback(workspace, names)
        _repro(
            workspace, [f"register@{m}" for m in names], ["--force"] if force else [], env, progress
        )
        for model in names:
            # DVC may find the workspace up to date while this registry has never seen the model
            # (a fresh or wiped registry): register the existing outputs then.
            if not registry.list_versions(MODEL_SPECS[model].registered_name):
                _repro(
                    workspace, [f"register@{model}"], ["--force", "--single-item"], env, progress
                )
        return {model: _result(model, workspace, run_id) for model in names}
