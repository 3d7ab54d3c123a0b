"""Batch validation benchmark: the column-wise numpy validator against the anchor it replaces,
the marshmallow record schema applied row by row, on the same 10,000-row housing batch in the
same run. Prints the medians and their ratio (the test suite checks correctness only).

    .venv/bin/python -m bench.bench_validation
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.predict.schemas import record_schema
from app.predict.validation import InputValidator
from core.specs import HOUSING

ROWS = 10_000
RUNS = 7


def median_seconds(fn: Callable[[], object], runs: int = RUNS) -> float:
    """Median wall time of fn over runs, after one warm-up call."""
    fn()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    """Time both validators on one batch and print the figures."""
    row = HOUSING.example_row()
    rows = [{**row, "MedInc": float(i % 10)} for i in range(ROWS)]
    validator = InputValidator(HOUSING)
    schema = record_schema(HOUSING)()
    fast = median_seconds(lambda: validator.parse({"instances": rows}, ROWS))
    per_row = median_seconds(lambda: [schema.load(r) for r in rows], runs=3)
    print(f"validate {ROWS:,} housing rows (median of {RUNS})")
    print(f"  column-wise numpy validator   {fast * 1000:8.1f} ms")
    print(f"  marshmallow schema per row    {per_row * 1000:8.1f} ms  (anchor, same run)")
    print(f"  ratio anchor / ours           {per_row / fast:8.1f}x")


if __name__ == "__main__":
    main()
