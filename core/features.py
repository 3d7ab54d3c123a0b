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
        """Raw columns in contract order -> engineered matrix."""
        x = np.asarray(X, dtype=float)
        med_inc, _age, rooms, bedrms, pop, occup, lat, lon = (x[:, i] for i in range(8))
        cols = [x]
        if self.ratios:
            cols.append(
                np.column_stack(
                    [
                        _safe_ratio(bedrms, rooms),
                        _safe_ratio(rooms, occup),
                        np.log1p(pop),
                        np.log1p(occup),
                        np.log1p(med_inc),
                    ]
                )
            )
        if self.geo:
            geo = []
            for deg in ROTATIONS_DEG:
                rad = np.deg2rad(deg)
                geo.append(lat * np.cos(rad) + lon * np.sin(rad))
                geo.append(lon * np.cos(rad) - lat * np.sin(rad))
            for c_lat, c_lon in CITY_COORDS.values():
                geo.append(np.hypot(lat - c_lat, (lon - c_lon) * np.cos(np.deg2rad(c_lat))))
            cols.append(np.column_stack(geo))
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
