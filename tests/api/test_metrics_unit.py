"""core.histogram_batch: a batch observed at once equals every value observed."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from core.histogram_batch import INTERNALS, observe_many, supported


def _samples(registry: CollectorRegistry) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observing_each_value():
    values = np.array([0.1, 0.5, 0.5, 1.0, 2.2, 7.0, 100.0, -1.0, float("nan")])
    buckets = (0.5, 1.0, 5.0)
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("h", "h", ["m"], buckets=buckets, registry=one)
    h_many = Histogram("h", "h", ["m"], buckets=buckets, registry=many)
    # Fails loudly when a prometheus_client upgrade drops the internals the fast path writes.
    assert supported(h_many.labels("x")), f"prometheus_client lacks {INTERNALS}"
    for v in values[~np.isnan(values)]:
        h_one.labels("x").observe(float(v))
    observe_many(h_many.labels("x"), values)
    assert _samples(one) == _samples(many)
    observe_many(h_many.labels("x"), [])  # nothing to do, no error
