"""Wall-clock serving latency, recorded as information only (MLflow metric, train.json).

Nothing decides on these figures and no DVC stage depends on them: they vary with the machine's
load. PIPELINE_TIMING_SCALE multiplies every figure, so a test can show that a slower machine
picks and produces exactly the same models."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

TIMING_SCALE_ENV = "PIPELINE_TIMING_SCALE"


def timing_scale() -> float:
    """Factor applied to measured times (1 unless a test slows the clock down)."""
    return float(os.environ.get(TIMING_SCALE_ENV) or 1.0)


def single_row_latency_ms(
    model: Any, rows: np.ndarray, repeats: int = 200, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median single-row predict latency in ms, with one BLAS/OpenMP thread as served."""
    timings = []
    with threadpool_limits(limits=1):
        model.predict(rows[:1])  # first call pays one-off lazy initialisation
        for i in range(repeats):
            row = rows[i % len(rows) : i % len(rows) + 1]
            start = clock()
            model.predict(row)
            timings.append(clock() - start)
    return float(np.median(timings) * 1000.0 * timing_scale())
