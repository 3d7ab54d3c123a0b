"""Stage features: fit the feature transformer that is served inside the model pipeline, and
record the training inputs' drift reference that the monitor compares live inputs with."""

from __future__ import annotations

import sys

import numpy as np
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from core import drift
from core.features import HousingFeatures
from core.specs import get_spec
from pipeline import io, params


def build(model: str, cfg: dict):
    """The unfitted transformer for a model, from its features params."""
    if model == "housing":
        return HousingFeatures(geo=cfg["geo"], ratios=cfg["ratios"])
    return StandardScaler() if cfg["scale"] else FunctionTransformer()


def write_drift_reference(model: str, x_train: np.ndarray) -> None:
    """Save models/<model>/drift_reference.json from the contract columns of the train split."""
    reference = drift.build_reference(x_train, get_spec(model).feature_names)
    # Unsorted: drift.feature_psi maps the reference's features to input columns by position.
    io.write_json(io.drift_reference_file(model), reference, sort_keys=False)


def main(model: str) -> None:
    """Fit on the train split; save features.pkl and drift_reference.json of models/<model>."""
    cfg = params.section("features", model)
    x_train, _ = io.read_split(model, "train")
    transformer = build(model, cfg).fit(x_train)
    io.save_object(io.model_dir(model) / "features.pkl", transformer)
    write_drift_reference(model, x_train)
    width = transformer.transform(x_train[:1]).shape[1]
    print(f"features {model}: {x_train.shape[1]} raw columns -> {width} model inputs")


if __name__ == "__main__":
    main(sys.argv[1])
