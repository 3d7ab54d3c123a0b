"""Serving-cost measurements shared by train (budget) and validate (gate)."""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


def single_row_latency_ms(model: Any, rows: np.ndarray, repeats: int = 200) -> float:
    """Median single-row predict latency in ms, with one BLAS/OpenMP thread as served."""
    timings = []
    with threadpool_limits(limits=1):
        model.predict(rows[:1])  # first call pays one-off lazy initialisation
        for i in range(repeats):
            row = rows[i % len(rows) : i % len(rows) + 1]
            start = time.perf_counter()
            model.predict(row)
            timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1000.0)


def artifact_mb(model: Any) -> float:
    """Serialized size of a fitted model in MB."""
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1_000_000
