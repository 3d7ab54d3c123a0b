"""Shadow scoring: the version that did not answer a request scores it too, off the request path.

While a model has a @challenger, each API worker hands a share of its unpinned requests
(SHADOW_SHARE) to a background thread, after the answer is computed: the client's answer and
latency do not depend on the shadow version, which may be slow, broken or still loading. The
thread scores the rows with the other version (the challenger when the champion answered, the
champion when a canary sent the request to the challenger) and writes both outputs, row by row,
to the prediction_shadow table, which GET /models/<name>/comparison reads.

Shadow rows are a sample: when SHADOW_QUEUE_MAX_ROWS rows already wait or the worker stops,
requests are dropped and counted (model_shadow_rows_total{outcome="dropped"}), never waited for.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from app.errors import ApiError
from app.inference import Prediction, compute, json_outputs
from app.model_cache import ServedModel
from app.traffic import Traffic
from app.version_cache import Pinned
from core import metrics
from core.prediction_log import shadow as shadow_log
from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION

log = logging.getLogger(__name__)

# How often the thread scores and writes what is queued: one batch model call per version pair
# and one database write per pass, instead of a call and a commit per request.
FLUSH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Job:
    """A request answered by `served` (as `alias`), to be scored by the other version."""

    served: ServedModel
    alias: str
    request_id: str
    matrix: np.ndarray
    prediction: Prediction


class ShadowScorer:
    """One worker's shadow queue and the thread that scores and writes it."""

    def __init__(
        self,
        traffic: Traffic,
        resolve: Callable[[Any, str | None], Pinned],
        engine: Callable[[], Engine],
        share: float,
        max_rows: int = 20_000,
    ) -> None:
        self.traffic = traffic  # knows each model's @challenger version (refreshed per tick)
        self._resolve = resolve  # VersionCache.get: (spec, pin) -> Pinned
        self._engine = engine
        self.share = share
        # Bounded in rows, not requests: a queue of 10,000-row batches would hold a lot of memory.
        self.max_rows = max_rows
        self._pending_rows = 0
        self._pending_lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- request path -------------------------------------------------------------------------
    def offer(
        self, pinned: Pinned, request_id: str, matrix: np.ndarray, prediction: Prediction
    ) -> None:
        """Queue a routed request's rows for shadow scoring (a sample of SHADOW_SHARE)."""
        served = pinned.served
        challenger = self.traffic.challenger(served.spec.name)
        if challenger is None or self.share <= 0.0 or self._stop.is_set():
            return
        alias = pinned.ref.get("alias", ALIAS_CHAMPION)
        if alias == ALIAS_CHAMPION and challenger == served.version:
            return  # the challenger was promoted: nothing to compare with until a new one
        if self.share < 1.0 and random.random() >= self.share:
            return
        n = len(prediction)
        with self._pending_lock:
            full = self._pending_rows + n > self.max_rows
            if not full:
                self._pending_rows += n
        if full:
            metrics.MODEL_SHADOW_ROWS.labels(served.spec.name, challenger, "dropped").inc(n)
            return
        self._queue.put_nowait(_Job(served, alias, request_id, matrix, prediction))

    # -- background thread --------------------------------------------------------------------
    def start(self) -> None:
        """Start the scoring thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Score and write what is queued (within timeout), then stop."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        # Wake every FLUSH_SECONDS and take everything queued: one model call per version pair
        # and one database write per pass, rather than a call and a commit per request.
        while True:
            stopping = self._stop.wait(FLUSH_SECONDS)
            jobs = []
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if jobs:
                try:
                    self.process(jobs)
                except Exception:  # the thread must never die; this pass's rows are lost
                    log.exception("shadow scoring of %d requests failed", len(jobs))
                finally:
                    with self._pending_lock:
                        self._pending_rows -= sum(len(job.prediction) for job in jobs)
            if stopping:
                return

    def process(self, jobs: list[_Job]) -> int:
        """Score jobs with their other version and write the rows; returns the rows written."""
        groups: dict[tuple[str, str, str], list[_Job]] = {}
        for job in jobs:
            key = (job.served.spec.name, job.served.version, job.alias)
            groups.setdefault(key, []).append(job)
        rows: list[dict[str, Any]] = []
        for group in groups.values():
            rows.extend(self._score(group))
        if rows:
            shadow_log.record(self._engine(), rows)
        return len(rows)

    def _other(self, job: _Job) -> ServedModel | None:
        spec = job.served.spec
        if job.alias == ALIAS_CHALLENGER:
            pin = None  # the champion
        else:
            pin = self.traffic.challenger(spec.name)
            if pin is None:
                return None
        try:
            other = self._resolve(spec, pin).served
        except ApiError as exc:  # not loadable now, failed validation, or gone
            log.warning("shadow version of %s unavailable: %s", spec.name, exc.message)
            return None
        return None if other.version == job.served.version else other

    def _score(self, group: list[_Job]) -> list[dict[str, Any]]:
        """Rows of requests answered by one version as one alias, scored by the other at once."""
        first = group[0]
        spec = first.served.spec
        n = sum(len(job.prediction) for job in group)
        other = self._other(first)
        if other is None:
            version = self.traffic.challenger(spec.name) or "none"
            metrics.MODEL_SHADOW_ROWS.labels(spec.name, version, "dropped").inc(n)
            return []
        try:
            matrix = np.vstack([job.matrix for job in group])
            prediction, seconds = compute(other, matrix)
        except Exception as exc:  # a broken shadow version must not disturb anything else
            metrics.MODEL_SHADOW_ROWS.labels(spec.name, other.version, "failed").inc(n)
            log.warning("shadow scoring by %s v%s failed: %s", spec.name, other.version, exc)
            return []
        metrics.MODEL_SHADOW_SECONDS.labels(spec.name).observe(seconds)
        metrics.MODEL_SHADOW_ROWS.labels(spec.name, other.version, "scored").inc(n)
        other_all = json_outputs(other, prediction)
        per_row_ms = seconds * 1000.0 / n
        rows, offset = [], 0
        for job in group:
            size = len(job.prediction)
            served_out = json_outputs(job.served, job.prediction)
            other_out = other_all[offset : offset + size]
            offset += size
            if job.alias == ALIAS_CHALLENGER:
                versions = (other.version, job.served.version)
                champion_out, challenger_out = other_out, served_out
            else:
                versions = (job.served.version, other.version)
                champion_out, challenger_out = served_out, other_out
            rows.extend(
                {
                    "request_id": job.request_id,
                    "row_index": i,
                    "model": spec.name,
                    "served": job.alias,
                    "champion_version": versions[0],
                    "champion_output": champion_out[i],
                    "challenger_version": versions[1],
                    "challenger_output": challenger_out[i],
                    "shadow_ms": per_row_ms * size,  # this request's share of the batch call
                }
                for i in range(size)
            )
        return rows
