"""Raw data loading: StatLib California Housing file and scikit-learn's bundled iris."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.specs import HOUSING, IRIS

HOUSING_RAW = Path("data/raw/cal_housing.data.gz")
HOUSING_RAW_COLUMNS = [
    "longitude",
    "latitude",
    "housingMedianAge",
    "totalRooms",
    "totalBedrooms",
    "population",
    "households",
    "medianIncome",
    "medianHouseValue",
]
TARGET = "target"


def housing_from_raw(raw: pd.DataFrame) -> pd.DataFrame:
    """StatLib columns -> scikit-learn's fetch_california_housing features plus target."""
    frame = pd.DataFrame(
        {
            "MedInc": raw["medianIncome"],
            "HouseAge": raw["housingMedianAge"],
            "AveRooms": raw["totalRooms"] / raw["households"],
            "AveBedrms": raw["totalBedrooms"] / raw["households"],
            "Population": raw["population"],
            "AveOccup": raw["population"] / raw["households"],
            "Latitude": raw["latitude"],
            "Longitude": raw["longitude"],
            TARGET: raw["medianHouseValue"] / 100_000.0,
        }
    )
    return frame[[*HOUSING.feature_names, TARGET]]


def load_housing(path: Path = HOUSING_RAW) -> pd.DataFrame:
    """The 20,640 housing rows with contract features and target (100k USD)."""
    raw = pd.read_csv(path, header=None, names=HOUSING_RAW_COLUMNS)
    return housing_from_raw(raw)


def load_iris_frame() -> pd.DataFrame:
    """The 150 iris rows with contract feature names and string labels."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    frame = pd.DataFrame(bunch.data, columns=IRIS.feature_names)
    frame[TARGET] = np.asarray(bunch.target_names)[bunch.target]
    return frame


def load(model: str) -> pd.DataFrame:
    """Raw frame for a model by name."""
    return {"housing": load_housing, "iris": load_iris_frame}[model]()
