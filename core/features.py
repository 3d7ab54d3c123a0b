"""Inference-time feature transformers; they are pickled inside the served model pipeline."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

# Large Californian centres; distance to them carries most of the location signal.
CITY_COORDS = {
    "sf": (37.7749, -122.4194),
    "la": (34.0522, -118.2437),
    "sd": (32.7157, -117.1611),
    "sj": (37.3382, -121.8863),
    "sac": (38.5816, -121.4944),
}
ROTATIONS_DEG = (15.0, 30.0, 45.0, 60.0)


# Constants of the geo features, computed once (the same scalar expressions as ever).
_ROT_COS = np.array([np.cos(np.deg2rad(deg)) for deg in ROTATIONS_DEG])
_ROT_SIN = np.array([np.sin(np.deg2rad(deg)) for deg in ROTATIONS_DEG])
_CITY_LAT = np.array([c_lat for c_lat, _ in CITY_COORDS.values()])
_CITY_LON = np.array([c_lon for _, c_lon in CITY_COORDS.values()])
_CITY_COS = np.array([np.cos(np.deg2rad(c_lat)) for c_lat, _ in CITY_COORDS.values()])


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


class HousingFeatures(TransformerMixin, BaseEstimator):
    """Adds ratio, log, rotated-coordinate and city-distance features to the 8 raw columns."""

    def __init__(self, geo: bool = True, ratios: bool = True):
        self.geo = geo
        self.ratios = ratios

    def fit(self, X, y=None):  # noqa: N803 - scikit-learn's argument names
        """Stateless: records the input width only."""
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):  # noqa: N803
        """Raw columns in contract order -> engineered matrix.

        Whole-matrix numpy operations (a few per group of features, not one per feature): a
        served single row costs little more than its handful of ufunc calls.
        """
        x = np.asarray(X, dtype=float)
        cols = [x]
        if self.ratios:
            # bedrooms / rooms, rooms / occupants; log1p of population, occupancy and income.
            cols.append(_safe_ratio(x[:, [3, 2]], x[:, [2, 5]]))
            cols.append(np.log1p(x[:, [4, 5, 0]]))
        if self.geo:
            lat, lon = x[:, 6:7], x[:, 7:8]
            rotated = np.empty((len(x), len(ROTATIONS_DEG), 2))
            rotated[:, :, 0] = lat * _ROT_COS + lon * _ROT_SIN
            rotated[:, :, 1] = lon * _ROT_COS - lat * _ROT_SIN
            cols.append(rotated.reshape(len(x), -1))
            cols.append(np.hypot(lat - _CITY_LAT, (lon - _CITY_LON) * _CITY_COS))
        return np.hstack(cols)

    def get_feature_names_out(self, input_features=None):
        """Names of the engineered columns."""
        base = list(input_features) if input_features is not None else [f"x{i}" for i in range(8)]
        names = list(base)
        if self.ratios:
            names += ["bedroom_ratio", "rooms_per_person", "log_population", "log_occup", "log_inc"]
        if self.geo:
            for deg in ROTATIONS_DEG:
                names += [f"rot{int(deg)}_a", f"rot{int(deg)}_b"]
            names += [f"dist_{city}" for city in CITY_COORDS]
        return np.asarray(names, dtype=object)
