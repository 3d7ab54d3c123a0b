"""Running one retrain job: claim it, run the pipeline with heartbeats, record the outcome.

Plain functions with their dependencies passed in, so tests call them without Celery. Training
code (`pipeline`) is imported here, on the worker side only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.engine import Engine

from core import jobs
from workers import retrain_metrics
from workers.config import WorkerSettings
from workers.reconcile import holder_is_gone, lost_note
from workers.runtime import WorkerIdentity

log = logging.getLogger(__name__)

Runner = Callable[..., dict[str, dict[str, Any]]]

# What DVC says when another `dvc repro` (e.g. left over from a killed attempt) holds the
# workspace. Users must never see it: the job waits for the workspace instead.
BUSY_MARKERS = ("Unable to acquire lock", "is busy")
BUSY_POLL_SECONDS = 2.0
WAITING_STAGE = "waiting for workspace"


class Heartbeat:
    """Background thread that keeps a running attempt's heartbeat fresh."""

    def __init__(self, engine: Engine, job_id: str, attempt: int, interval: float) -> None:
        self._args = (engine, job_id, attempt)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not jobs.heartbeat(*self._args):
                    log.warning("job %s attempt %d was superseded", self._args[1], self._args[2])
                    return
            except Exception as exc:  # a database blip must not end the retrain
                log.warning("heartbeat of job %s failed: %s", self._args[1], exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def default_runner() -> Runner:
    """The real pipeline entry point (imported only when a job runs)."""
    from pipeline.runner import run_pipeline

    return run_pipeline


def is_busy(error: Exception) -> bool:
    """True when the pipeline failed only because another run holds the workspace."""
    return any(marker in str(error) for marker in BUSY_MARKERS)


def run_when_free(
    runner: Runner, wait_seconds: float, on_wait: Callable[[], None], **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """Call runner, retrying while the workspace is busy, for at most wait_seconds."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return runner(**kwargs)
        except Exception as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise WorkspaceBusy(
                    f"the pipeline workspace stayed locked by another pipeline run for "
                    f"{wait_seconds:.0f} s (a killed attempt's run may still be finishing); "
                    "retry later"
                ) from None
            on_wait()
            time.sleep(BUSY_POLL_SECONDS)


class WorkspaceBusy(RuntimeError):
    """Another pipeline run kept the workspace for longer than we wait."""


def stop_leftover_run(job_id: str, timeout: float = 10.0) -> int:
    """Kill pipeline processes an earlier attempt of job_id left running on this host.

    A worker killed mid-retrain orphans its `dvc repro` and stage processes; they would keep
    the workspace locked and burn CPU on a run nobody waits for. They are recognised by the
    PIPELINE_RUN_ID (= job id) that run_pipeline puts in their environment.
    """
    import psutil

    mine = {os.getpid(), os.getppid()}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in mine:
            continue
        try:
            if proc.environ().get("PIPELINE_RUN_ID") == job_id:
                found.append(proc)
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=timeout)
    if found:
        log.warning("job %s: stopped %d leftover pipeline processes", job_id, len(found))
    return len(found)


def describe_error(exc: BaseException, ws: WorkerSettings) -> str:
    """A clear, user-facing message for an exception that ended a retrain."""
    from pipeline.params import ParamsError
    from pipeline.runner import PipelineError

    if isinstance(exc, SoftTimeLimitExceeded):
        return f"the retrain exceeded its time limit of {ws.soft_time_limit} s and was stopped"
    if isinstance(exc, ParamsError):
        return f"invalid pipeline parameters: {exc}"
    if isinstance(exc, PipelineError | WorkspaceBusy):
        return str(exc)
    return f"unexpected error in the retrain worker: {type(exc).__name__}: {exc}"


def _progress(engine: Engine, job_id: str, attempt: int) -> Callable[[str, str], None]:
    def report(model: str, stage: str) -> None:
        try:
            jobs.set_stage(engine, job_id, attempt, f"{stage}@{model}")
        except Exception as exc:  # progress is informative; never let it break the run
            log.warning("could not record stage of job %s: %s", job_id, exc)
        retrain_metrics.stage(model, stage)
        log.info("job %s: stage %s@%s", job_id, stage, model)

    return report


def run_job(
    job_id: str,
    me: WorkerIdentity,
    ws: WorkerSettings,
    engine: Engine,
    runner: Runner | None = None,
    workspace: Path | None = None,
) -> str:
    """Run one job to a recorded end; returns the final state, or "skipped: <why>"."""
    claim = jobs.claim(
        engine, job_id, me.nodename, me.pid, lambda j: holder_is_gone(j, me, ws.stale_seconds)
    )
    if claim.job is None:
        log.info("job %s not run: %s", job_id, claim.skipped)
        return f"skipped: {claim.skipped}"
    job = claim.job
    attempt = job.attempts
    if attempt > ws.max_attempts:
        # Every earlier attempt died with its worker (e.g. out of memory): stop retrying.
        error = f"{job.error or lost_note(job)}; gave up after {attempt - 1} attempts"
        if jobs.finish(engine, job_id, attempt, jobs.FAILED, error=error):
            retrain_metrics.record_failure(job.models, None)
        return jobs.FAILED
    log.info("job %s attempt %d: retrain %s (force=%s)", job_id, attempt, job.model, job.force)
    if attempt > 1:
        stop_leftover_run(job_id)
    started = time.monotonic()
    models = job.models
    try:
        with Heartbeat(engine, job_id, attempt, ws.heartbeat_seconds):
            results = run_when_free(
                runner or default_runner(),
                ws.busy_wait_seconds,
                lambda: jobs.set_stage(engine, job_id, attempt, WAITING_STAGE),
                models=models,
                force=job.force,
                workspace=workspace or ws.workspace,
                progress=_progress(engine, job_id, attempt),
                # The job id as run id: it marks the run's processes (stop_leftover_run) and
                # lets a later attempt report what an earlier one already registered.
                run_id=job_id,
            )
    except Exception as exc:  # SoftTimeLimitExceeded included; SystemExit is left to Celery
        seconds = time.monotonic() - started
        error = describe_error(exc, ws)
        log.error("job %s failed after %.1f s: %s", job_id, seconds, error)
        if jobs.finish(engine, job_id, attempt, jobs.FAILED, error=error):
            retrain_metrics.record_failure(models, seconds)
        return jobs.FAILED
    seconds = time.monotonic() - started
    outcomes = {model: retrain_metrics.outcome(res) for model, res in results.items()}
    if jobs.finish(engine, job_id, attempt, jobs.SUCCEEDED, result=results, stage="done"):
        retrain_metrics.record(outcomes, seconds)
        log.info("job %s succeeded in %.1f s: %s", job_id, seconds, outcomes)
    else:
        log.warning("job %s finished, but attempt %d had been superseded", job_id, attempt)
    return jobs.SUCCEEDED
