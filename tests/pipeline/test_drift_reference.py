"""Drift references: written from the training split, stored with every version, scored by PSI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from core import drift, registry
from core.specs import HOUSING, MODEL_SPECS

SAMPLE_ROWS = 2000
FLOOR = 1e-4  # the share floor core.drift documents, so an empty bin gives a finite term


def _train_split(trained_registry, model: str) -> pd.DataFrame:
    return pd.read_csv(trained_registry.workspace / "data" / "prepared" / model / "train.csv")


def _bin_counts(edges: list[float], values: np.ndarray) -> list[int]:
    """Rows per bin by explicit comparisons: (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    bounds = [-math.inf, *edges, math.inf]
    return [int(np.sum((values >= lo) & (values < hi))) for lo, hi in itertools.pairwise(bounds)]


def _direct_psi(edges: list[float], train: np.ndarray, live: np.ndarray) -> float:
    """PSI written out: shares per bin, floored, summed (a - e) * ln(a / e)."""
    expected = [c / len(train) for c in _bin_counts(edges, train)]
    actual = [c / len(live) for c in _bin_counts(edges, live)]
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return total


@pytest.fixture(scope="module")
def housing_reference(trained_registry) -> dict:
    reference = registry.load_drift_reference(HOUSING.registered_name, "1")
    assert reference is not None, "version 1 has no drift reference artifact"
    return reference


@pytest.mark.parametrize("model", sorted(MODEL_SPECS))
def test_every_registered_version_carries_a_reference_of_all_features(trained_registry, model):
    spec = MODEL_SPECS[model]
    versions = registry.list_versions(spec.registered_name)
    assert versions
    train = _train_split(trained_registry, model)
    for version in versions:
        reference = registry.load_drift_reference(spec.registered_name, version.version)
        assert reference is not None, f"{model} v{version.version} has no drift reference"
        # Order matters: feature_psi reads the reference's features as input columns.
        assert list(reference["features"]) == spec.feature_names
        if version.version == "1":  # the session run trained it on this very split
            assert reference["rows"] == len(train)
        for feature in reference["features"].values():
            assert len(feature["expected"]) == len(feature["edges"]) + 1
            assert sum(feature["expected"]) == pytest.approx(1.0)


def test_reference_is_the_training_split_binned_at_its_deciles(trained_registry, housing_reference):
    train = _train_split(trained_registry, "housing")
    stored = json.loads(
        (trained_registry.workspace / "models" / "housing" / "drift_reference.json").read_text()
    )
    assert stored == housing_reference  # the artifact is the file the features stage wrote
    for name, feature in housing_reference["features"].items():
        values = train[name].to_numpy(dtype=float)
        deciles = np.unique(np.percentile(values, [10, 20, 30, 40, 50, 60, 70, 80, 90]))
        assert feature["edges"] == pytest.approx(deciles.tolist(), rel=1e-12)
        counts = _bin_counts(feature["edges"], values)
        assert feature["expected"] == pytest.approx([c / len(values) for c in counts], abs=1e-12)


def test_psi_is_small_for_training_like_rows_and_large_for_shifted_income(
    trained_registry, housing_reference
):
    train = _train_split(trained_registry, "housing")
    sample = train.sample(n=SAMPLE_ROWS, random_state=7)[HOUSING.feature_names]
    shifted = sample.assign(MedInc=sample["MedInc"] * 3)

    same = drift.feature_psi(housing_reference, sample.to_numpy(dtype=float))
    moved = drift.feature_psi(housing_reference, shifted.to_numpy(dtype=float))

    assert max(same.values()) < 0.02, same
    assert moved["MedInc"] > 1.0, moved  # far beyond the 0.25 "significant" line
    assert drift.overall_score(moved) == moved["MedInc"]
    for name in HOUSING.feature_names:
        if name != "MedInc":
            assert moved[name] == same[name]
    for rows, scores in ((sample, same), (shifted, moved)):
        for name in HOUSING.feature_names:
            edges = housing_reference["features"][name]["edges"]
            direct = _direct_psi(
                edges, train[name].to_numpy(dtype=float), rows[name].to_numpy(dtype=float)
            )
            assert scores[name] == pytest.approx(direct, abs=1e-9), name
