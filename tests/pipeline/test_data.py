"""Feature derivation from the StatLib file, checked on known rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features import HousingFeatures
from core.settings import PROJECT_ROOT
from core.specs import HOUSING
from pipeline import data
from pipeline.prepare import clean


@pytest.fixture(scope="module")
def housing() -> pd.DataFrame:
    return data.load_housing(PROJECT_ROOT / data.HOUSING_RAW)


def test_housing_has_all_rows_and_contract_columns(housing):
    assert len(housing) == 20_640
    assert list(housing.columns) == [*HOUSING.feature_names, data.TARGET]


def test_first_statlib_row_matches_scikit_learn_features(housing):
    first = housing.iloc[0]
    assert first["MedInc"] == pytest.approx(8.3252)
    assert first["HouseAge"] == pytest.approx(41.0)
    assert first["AveRooms"] == pytest.approx(6.984127, abs=1e-6)
    assert first["AveBedrms"] == pytest.approx(1.02381, abs=1e-5)
    assert first["Population"] == pytest.approx(322.0)
    assert first["AveOccup"] == pytest.approx(2.555556, abs=1e-6)
    assert first["Latitude"] == pytest.approx(37.88)
    assert first["Longitude"] == pytest.approx(-122.23)
    assert first[data.TARGET] == pytest.approx(4.526)


def test_iris_has_string_labels_in_contract_order():
    iris = data.load_iris_frame()
    assert len(iris) == 150
    assert sorted(iris[data.TARGET].unique()) == ["setosa", "versicolor", "virginica"]
    assert iris.iloc[0]["sepal_length"] == pytest.approx(5.1)


def test_clean_drops_impossible_and_missing_rows(housing):
    dirty = housing.head(5).copy()
    dirty.loc[1, "Latitude"] = 123.0
    dirty.loc[2, "MedInc"] = np.nan
    dirty.loc[3, "Population"] = -1.0
    assert len(clean(dirty, "housing")) == 2


def test_housing_features_are_finite_and_named(housing):
    x = housing[HOUSING.feature_names].to_numpy()[:100]
    zeros = np.zeros((1, 8))  # zero rooms/occupancy must not divide by zero
    transformer = HousingFeatures().fit(x)
    out = transformer.transform(np.vstack([x, zeros]))
    names = transformer.get_feature_names_out(HOUSING.feature_names)
    assert out.shape == (101, len(names))
    assert np.isfinite(out).all()
    assert out[:100, :8] == pytest.approx(x)
    ratio = names.tolist().index("bedroom_ratio")
    assert out[0, ratio] == pytest.approx(x[0, 3] / x[0, 2])
