"""Job records and the single-flight lock, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from core import jobs


def _claim(engine, job_id: str, attempt_ok: bool = False) -> jobs.Claim:
    return jobs.claim(engine, job_id, "w@test", 1234, lambda job: attempt_ok)


def test_submit_records_a_queued_job_and_conflicts_name_it(job_engine):
    job = jobs.submit(job_engine, "housing", force=True, trigger="api", reason="drift")
    stored = jobs.get(job_engine, job.job_id)
    assert stored.state == jobs.QUEUED and stored.force is True and stored.reason == "drift"
    assert stored.submitted_at.tzinfo is not None
    with pytest.raises(jobs.JobConflict) as err:
        jobs.submit(job_engine, "housing")
    assert err.value.job.job_id == job.job_id and err.value.model == "housing"
    # "all" needs both models, so it conflicts with the housing job too; iris alone is free.
    with pytest.raises(jobs.JobConflict):
        jobs.submit(job_engine, "all")
    iris = jobs.submit(job_engine, "iris")
    assert {j.job_id for j in jobs.active(job_engine)} == {job.job_id, iris.job_id}


def test_all_blocks_each_model(job_engine):
    everything = jobs.submit(job_engine, "all")
    for model in ("housing", "iris", "all"):
        with pytest.raises(jobs.JobConflict) as err:
            jobs.submit(job_engine, model)
        assert err.value.job.job_id == everything.job_id


def test_unknown_model_is_refused(job_engine):
    with pytest.raises(ValueError, match="unknown model"):
        jobs.submit(job_engine, "wine")


def test_concurrent_submits_have_exactly_one_winner(job_engine):
    barrier = threading.Barrier(8)

    def attempt(_: int) -> str:
        barrier.wait()
        try:
            return jobs.submit(job_engine, "iris").job_id
        except jobs.JobConflict as exc:
            return f"409:{exc.job.job_id}"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    winners = [o for o in outcomes if not o.startswith("409:")]
    assert len(winners) == 1, outcomes
    assert all(o == f"409:{winners[0]}" for o in outcomes if o.startswith("409:"))
    with job_engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(jobs.retrain_jobs)).scalar()
    assert count == 1  # losers leave no rows behind


def test_claim_runs_each_attempt_once_and_finish_releases_the_lock(job_engine):
    job = jobs.submit(job_engine, "housing")
    claimed = _claim(job_engine, job.job_id)
    assert claimed.job.state == jobs.RUNNING and claimed.job.attempts == 1
    # A duplicate delivery while the holder is alive does not run it again.
    assert _claim(job_engine, job.job_id).skipped.startswith("already running")
    assert jobs.set_stage(job_engine, job.job_id, 1, "train@housing")
    assert jobs.get(job_engine, job.job_id).stage == "train@housing"
    assert jobs.finish(job_engine, job.job_id, 1, jobs.SUCCEEDED, result={"housing": {"a": 1}})
    done = jobs.get(job_engine, job.job_id)
    assert done.state == jobs.SUCCEEDED and done.result == {"housing": {"a": 1}}
    assert done.finished_at >= done.started_at >= done.submitted_at
    # Redelivered after success: skipped; and the model is free again.
    assert _claim(job_engine, job.job_id, attempt_ok=True).skipped == "already succeeded"
    assert jobs.submit(job_engine, "housing").job_id != job.job_id


def test_a_superseded_attempt_cannot_overwrite_the_record(job_engine):
    job = jobs.submit(job_engine, "iris")
    _claim(job_engine, job.job_id)
    taken = _claim(job_engine, job.job_id, attempt_ok=True)  # holder judged gone
    assert taken.job.attempts == 2
    assert not jobs.finish(job_engine, job.job_id, 1, jobs.FAILED, error="late")
    assert not jobs.heartbeat(job_engine, job.job_id, 1)
    assert jobs.finish(job_engine, job.job_id, 2, jobs.SUCCEEDED, result={})
    assert jobs.get(job_engine, job.job_id).state == jobs.SUCCEEDED


def test_requeue_then_fail_and_discard(job_engine):
    job = jobs.submit(job_engine, "iris")
    _claim(job_engine, job.job_id)
    assert jobs.requeue(job_engine, job.job_id, 1, "attempt 1 was lost")
    requeued = jobs.get(job_engine, job.job_id)
    assert requeued.state == jobs.QUEUED and requeued.error == "attempt 1 was lost"
    with pytest.raises(jobs.JobConflict):  # still holds its lock while queued again
        jobs.submit(job_engine, "iris")
    assert jobs.fail(job_engine, job.job_id, "gave up")
    assert jobs.get(job_engine, job.job_id).state == jobs.FAILED
    other = jobs.submit(job_engine, "iris")
    assert jobs.discard(job_engine, other.job_id)
    assert jobs.get(job_engine, other.job_id) is None
    jobs.submit(job_engine, "iris")  # the discarded job's lock went with it


def test_recent_is_newest_first_and_limited(job_engine):
    ids = []
    for _ in range(3):
        job = jobs.submit(job_engine, "housing")
        ids.append(job.job_id)
        jobs.fail(job_engine, job.job_id, "test")
    assert [j.job_id for j in jobs.recent(job_engine, 2)] == ids[::-1][:2]
