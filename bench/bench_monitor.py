"""Performance-monitoring benchmark: the cost of what issue 7 adds, against anchors measured in
the same run.

- prediction log write rate with the request_id index (needed by POST /feedback) vs without;
- feedback: labels stored per second (1,000-label calls) and the lookup of one label;
- PSI of a drift window (5,000 rows x 8 features) and a whole drift check (read the window
  from the log, bin, score) vs reading the window alone;
- retention: rows pruned per second in bounded batches.

    .venv/bin/python -m bench.bench_monitor
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import db, drift, feedback, prediction_log
from core.specs import HOUSING, MODEL_SPECS

ROWS = 200_000
BATCH = 1_000


def best_of(fn: Callable[[], float], runs: int = 3) -> float:
    """Smallest of a few timings (seconds): the least disturbed run."""
    return min(fn() for _ in range(runs))


def engine_at(folder: Path, name: str, with_index: bool = True):
    """A fresh SQLite app database; optionally without the request_id index."""
    engine = db.make_engine(f"sqlite:///{folder / name}")
    db.ensure_schema(engine)
    if not with_index:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_prediction_log_request_id_row_index"))
    return engine


def fill(engine, rows: int = ROWS, shift: float = 1.0) -> float:
    """Write rows housing predictions in 1,000-row requests; returns rows per second."""
    rng = np.random.default_rng(0)
    writer = prediction_log.PredictionLogWriter(engine, MODEL_SPECS.values())
    x = np.tile(np.array([[HOUSING.example_row()[n] for n in HOUSING.feature_names]]), (BATCH, 1))
    x = x * rng.uniform(0.8, 1.2, size=x.shape) * np.r_[shift, np.ones(7)]
    y = rng.uniform(0.5, 5.0, BATCH)
    start = time.perf_counter()
    for i in range(rows // BATCH):
        writer.record(f"req-{i:07d}", "housing", "1", x, y, 1.0)
        if writer.pending_rows >= 20_000:
            writer.flush()
    writer.flush()
    return rows / (time.perf_counter() - start)


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = [fill(engine_at(folder, f"plain{i}.db", False)) for i in range(2)]
        indexed = [fill(engine_at(folder, f"indexed{i}.db")) for i in range(2)]
        print(f"prediction log write, rows/s: without request_id index {max(plain):,.0f}, ", end="")
        print(f"with it {max(indexed):,.0f} ({max(indexed) / max(plain):.2f}x)")

        engine = engine_at(folder, "feedback.db")
        fill(engine)
        labels = [feedback.Label(f"req-{i:07d}", j, 2.5) for i in range(100) for j in range(10)]

        def store() -> float:
            start = time.perf_counter()
            out = feedback.record(engine, labels, MODEL_SPECS)
            assert out.accepted or out.duplicates
            return time.perf_counter() - start

        first = store()
        print(f"feedback: 1,000 labels stored in {first * 1000:.0f} ms ({1000 / first:,.0f}/s)")
        one = best_of(
            lambda: _timed(
                lambda: feedback.record(
                    engine, [feedback.Label("req-0000150", 3, 1.0)], MODEL_SPECS
                )
            ),
            5,
        )
        print(f"feedback: one label among {ROWS:,} logged rows in {one * 1000:.1f} ms")

        window = 5_000
        reference = drift.build_reference(
            np.random.default_rng(1).normal(size=(20_000, 8)), HOUSING.feature_names
        )
        read = best_of(lambda: _timed(lambda: _window(engine, window)))
        check = best_of(
            lambda: _timed(lambda: drift.feature_psi(reference, _window(engine, window)))
        )
        psi_only = best_of(lambda: _timed(lambda: drift.feature_psi(reference, _ARR)), 5)
        print(
            f"drift check of {window:,} logged rows: {check * 1000:.0f} ms "
            f"(reading the window alone {read * 1000:.0f} ms; PSI alone {psi_only * 1000:.1f} ms)"
        )

        cutoff = db.utcnow() - timedelta(days=30)
        with engine.begin() as conn:
            conn.execute(
                update(prediction_log.prediction_log).values(created_at=cutoff - timedelta(days=1))
            )
        start = time.perf_counter()
        pruned = prediction_log.prune(engine, cutoff, batch_rows=5_000)
        took = time.perf_counter() - start
        print(
            f"retention: {pruned.deleted:,} rows pruned in {pruned.batches} batches, "
            f"{took:.1f} s ({pruned.deleted / took:,.0f}/s)"
        )


_ARR = np.random.default_rng(2).normal(size=(5_000, 8))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _window(engine, rows: int) -> np.ndarray:
    return prediction_log.recent_inputs(engine, HOUSING, rows)


if __name__ == "__main__":
    main()
