"""Input drift by the Population Stability Index (PSI) over per-feature quantile bins.

The pipeline builds a reference from each model version's training rows (bin edges at the
training quantiles and the share of training rows in each bin) and stores it with the version;
the monitor bins recent logged inputs with the same edges and compares the shares:

    PSI = sum_i (actual_i - expected_i) * ln(actual_i / expected_i)

Shares are floored at EPSILON so an empty bin gives a large but finite term. Common reading:
below 0.1 no shift, 0.1 to 0.25 moderate, above 0.25 significant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_BINS = 10
EPSILON = 1e-4
REFERENCE_VERSION = 1


def bin_index(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 below the first inner edge ... len(edges) at or above the last."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), "right")


def shares(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Fraction of values in each of the len(edges) + 1 bins."""
    values = np.asarray(values, dtype=float)
    counts = np.bincount(bin_index(edges, values), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def feature_reference(values: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, list[float]]:
    """Inner edges at the training quantiles (ties merged) and the training share per bin."""
    values = np.asarray(values, dtype=float)
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    return {"edges": edges.tolist(), "expected": shares(edges, values).tolist()}


def build_reference(
    x: np.ndarray, feature_names: Sequence[str], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The drift reference of a training matrix (rows x features in feature_names order)."""
    x = np.asarray(x, dtype=float)
    return {
        "format": REFERENCE_VERSION,
        "bins": bins,
        "rows": len(x),
        "features": {
            name: feature_reference(x[:, j], bins) for j, name in enumerate(feature_names)
        },
    }


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPSILON) -> float:
    """PSI between two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), eps, None)
    a = np.clip(np.asarray(actual, dtype=float), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: Mapping[str, Any], x: np.ndarray) -> dict[str, float]:
    """PSI of every reference feature for the rows x (columns in the reference's order)."""
    x = np.asarray(x, dtype=float)
    out = {}
    for j, (name, ref) in enumerate(reference["features"].items()):
        out[name] = psi(ref["expected"], shares(ref["edges"], x[:, j]))
    return out


def overall_score(scores: Mapping[str, float]) -> float:
    """One number per model: the worst feature's PSI (one shifted feature is drift enough)."""
    return max(scores.values(), default=0.0)
